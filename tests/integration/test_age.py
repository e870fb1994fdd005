"""Exports encrypted to the customer's own age keys: each recipient opens every file, kbaudit
itself cannot, and the hashes say which bytes are which."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import orjson
import pyrage
import pytest
from pyrage import x25519

from kbaudit.services.exports.download import delivered_chunks
from kbaudit.services.verify import read_keys, verify_export
from tests.conftest import Api
from tests.helpers import (
    DEMO_WINDOW,
    EXPORTS,
    data_files,
    download_all,
    seed_demo,
    start_export,
    view_export,
)

ALICE, BOB = x25519.Identity.generate(), x25519.Identity.generate()
RECIPIENTS = [str(ALICE.to_public()), str(BOB.to_public())]


@pytest.fixture
def api_with_records(make_api: Callable[..., Api]) -> tuple[Api, dict[str, str], list[str]]:
    api = make_api(export_rows_per_file=20)
    key = api.key()
    ids = [str(record.id) for record in seed_demo(api, key, 50)]
    return api, key, ids


def test_both_recipients_open_every_file_and_get_the_plaintext(
    api_with_records: tuple[Api, dict[str, str], list[str]],
) -> None:
    api, key, ids = api_with_records
    job = view_export(
        api, key, start_export(api, key, export_format="ndjson", recipients=RECIPIENTS)["id"]
    )
    assert job["status"] == "succeeded"
    assert job["recipients"] == RECIPIENTS
    files = dict(download_all(api, key, job["id"]))
    assert sorted(files) == [
        "kb-audit-00001.ndjson.age",
        "kb-audit-00002.ndjson.age",
        "kb-audit-00003.ndjson.age",
    ]
    seen = []
    for listed in data_files(job):
        delivered = files[listed["name"]]
        assert delivered.startswith(b"age-encryption.org/v1\n")
        assert hashlib.sha256(delivered).hexdigest() == listed["sha256_delivered"]
        for identity in (ALICE, BOB):
            plaintext = pyrage.decrypt(delivered, [identity])
            assert hashlib.sha256(plaintext).hexdigest() == listed["sha256_plaintext"]
        seen += [
            orjson.loads(line)["id"] for line in pyrage.decrypt(delivered, [ALICE]).splitlines()
        ]
    assert sorted(seen) == sorted(ids)


def test_kbaudit_cannot_read_what_it_stored(
    api_with_records: tuple[Api, dict[str, str], list[str]],
) -> None:
    """Opened with every key kbaudit holds, a stored file is still an age file: no record in
    it can be read, and no other identity opens it."""
    api, key, ids = api_with_records
    job_id = start_export(api, key, export_format="csv", recipients=RECIPIENTS)["id"]
    deps = api.container.exports
    with deps.store.reading() as uow:
        job = uow.exports.job(job_id)
        parts = uow.exports.parts(job_id)
        org_uuid = uow.keys.organization(job.org_id).uuid  # type: ignore[union-attr]
    assert job is not None
    for part in parts:
        stored = b"".join(deps.blobs.read(part.file.blob_key))
        opened = b"".join(delivered_chunks(deps.keys, deps.blobs, job, org_uuid, part))
        assert opened.startswith(b"age-encryption.org/v1\n")
        for record_id in ids:
            assert record_id.encode() not in stored
            assert record_id.encode() not in opened
        with pytest.raises(pyrage.DecryptError):
            pyrage.decrypt(opened, [x25519.Identity.generate()])


def test_an_age_export_verifies_by_its_delivered_hashes(
    api_with_records: tuple[Api, dict[str, str], list[str]], tmp_path: Path
) -> None:
    api, key, _ = api_with_records
    job_id = start_export(api, key, export_format="ndjson", recipients=RECIPIENTS[:1])["id"]
    for name, content in download_all(api, key, job_id, manifest=True):
        (tmp_path / name).write_bytes(content)
    keys = read_keys(api.client.get("/v1/knowledge-base/audit/signing-keys").text)
    verified = verify_export(tmp_path, keys)
    assert verified.rows == 50
    assert any("recipients" in note for note in verified.unchecked)


@pytest.mark.parametrize(
    ("recipients", "wrong"),
    [
        (["age1notarecipient"], "age1notarecipient"),
        ([RECIPIENTS[0], "ssh-ed25519 AAAA"], "ssh-ed25519 AAAA"),
        ([RECIPIENTS[0]] * 11, "recipients"),
        ([], "recipients"),
    ],
)
def test_a_bad_recipient_is_refused_by_name(api: Api, recipients: list[str], wrong: str) -> None:
    key = api.key()
    response = api.client.post(EXPORTS, json={**DEMO_WINDOW, "recipients": recipients}, headers=key)
    assert response.status_code == 422, response.text
    assert wrong in response.text
    assert api.client.get(EXPORTS, headers=key).json()["items"] == []
