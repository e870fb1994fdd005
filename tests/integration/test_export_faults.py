"""Exports under bad input and faults: wrong requests, wrong tokens, failing parts, damaged
ciphertext, expiry. Every answer is specific; nothing leaks or lies."""

from __future__ import annotations

import base64
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from kbaudit.blobs import BlobStore
from kbaudit.crypto.keyring import rotate
from kbaudit.domain import OrgId
from tests.conftest import Api, ManualClock
from tests.helpers import (
    DEMO_WINDOW,
    EXPORTS,
    SIGNED_FILES,
    seed_demo,
    start_export,
    view_export,
)


def put_blob(blobs: BlobStore, key: str, content: bytes) -> None:
    with blobs.writer(key) as sink:
        sink.write(content)


class FailingBlobs:
    """A real blob store whose writes fail for the named files: a part that fails for good."""

    def __init__(self, inner: BlobStore, failing: set[str]) -> None:
        self.inner = inner
        self.failing = failing
        self.attempts = 0

    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        if any(f"/{name}." in key for name in self.failing):
            self.attempts += 1
            raise OSError("disk on fire")
        return self.inner.writer(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def download(api: Api, key: dict[str, str], export_id: str, name: str, token: str) -> Any:
    return api.client.get(
        f"{EXPORTS}/{export_id}/download/{name}", params={"token": token}, headers=key
    )


@pytest.fixture
def finished(api: Api) -> tuple[Api, dict[str, str], dict[str, Any]]:
    key = api.key()
    seed_demo(api, key, 50)
    job = start_export(api, key)
    return api, key, view_export(api, key, job["id"])


BAD_BODIES: dict[str, dict[str, Any]] = {
    "window over 366 days": {"start": "2025-01-01T00:00:00Z", "end": "2026-01-03T00:00:00Z"},
    "start equals end": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
    "start after end": {"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
    "naive start": {"start": "2026-01-01T00:00:00", "end": "2026-02-01T00:00:00Z"},
    "unknown format": {**DEMO_WINDOW, "export_format": "xlsx"},
    "unknown status": {**DEMO_WINDOW, "statuses": ["hit", "nope"]},
    "bad kb uuid": {**DEMO_WINDOW, "kb_ids": ["kb-1"]},
    "bad actor uuid": {**DEMO_WINDOW, "actor_user_id": "me"},
    "missing end": {"start": "2026-01-01T00:00:00Z"},
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_export_request_is_a_422_and_creates_nothing(api: Api, body: dict[str, Any]) -> None:
    key = api.key()
    response = api.client.post(EXPORTS, json=body, headers=key)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"]
    assert api.client.get(EXPORTS, headers=key).json()["items"] == []


def test_export_needs_the_export_scope(api: Api) -> None:
    reader = api.key(scopes=("kb_audit:read",))
    response = api.client.post(EXPORTS, json=DEMO_WINDOW, headers=reader)
    assert response.status_code == 403


def test_a_second_active_export_is_a_409(api: Api) -> None:
    key = api.key()
    api.container.exports.dispatcher = _Holding()  # jobs stay pending
    start_export(api, key)
    response = api.client.post(EXPORTS, json=DEMO_WINDOW, headers=key)
    assert response.status_code == 409
    assert response.json()["error"] == "export_in_progress"
    other_org = api.key("other")
    assert api.client.post(EXPORTS, json=DEMO_WINDOW, headers=other_org).status_code == 202


class _Holding:
    def plan_export(self, job_id: str) -> None:
        pass

    def run_part(self, job_id: str, part_no: int) -> None:
        pass


def test_idempotency_key_returns_the_same_job_and_refuses_another_body(api: Api) -> None:
    key = {**api.key(), "Idempotency-Key": "nightly-2026-05-31"}
    first = api.client.post(EXPORTS, json=DEMO_WINDOW, headers=key)
    again = api.client.post(EXPORTS, json=DEMO_WINDOW, headers=key)
    assert first.json()["id"] == again.json()["id"]
    other = api.client.post(EXPORTS, json={**DEMO_WINDOW, "export_format": "ndjson"}, headers=key)
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_key_reused"


def test_a_part_failing_every_retry_gives_partial_with_its_rows_counted(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(export_rows_per_file=10, export_part_attempts=3)
    key = api.key()
    seed_demo(api, key, 45)
    failing = FailingBlobs(api.container.exports.blobs, {"kb-audit-00002.csv"})
    api.container.exports.blobs = failing
    job = view_export(api, key, start_export(api, key)["id"])
    assert failing.attempts == 3
    assert job["status"] == "partial"
    assert job["failed_count"] == 10
    assert job["total_rows"] == 35
    assert job["error_code"]
    assert [f["name"] for f in job["files"]] == [
        *(f"kb-audit-{n:05d}.csv" for n in (1, 3, 4, 5)),
        *SIGNED_FILES,
    ]


def test_all_parts_failing_gives_failed_with_an_error_code(make_api: Callable[..., Api]) -> None:
    api = make_api(export_rows_per_file=20)
    key = api.key()
    seed_demo(api, key, 30)
    names = {"kb-audit-00001.csv", "kb-audit-00002.csv"}
    api.container.exports.blobs = FailingBlobs(api.container.exports.blobs, names)
    job = view_export(api, key, start_export(api, key)["id"])
    assert (job["status"], job["total_rows"], job["failed_count"]) == ("failed", 0, 30)
    assert job["error_code"] == "export_failed"
    assert job["files"] == []


def test_token_checks(finished: tuple[Api, dict[str, str], dict[str, Any]]) -> None:
    api, key, job = finished
    file = job["files"][0]
    name, token = file["name"], file["download_token"]
    expiry, version, mac = token.split(".")
    forged_mac = mac[:-2] + ("AA" if not mac.endswith("AA") else "BB")
    cases = {
        "tampered mac": f"{expiry}.{version}.{forged_mac}",
        "later expiry": f"{int(expiry) + 3600}.{version}.{mac}",
        "truncated": token[:-5],
        "garbage": "not-a-token",
        "unknown key version": f"{expiry}.99.{mac}",
        "very long": "1" * 500,
    }
    for label, bad in cases.items():
        response = download(api, key, job["id"], name, bad)
        assert response.status_code == 401, label
        assert response.json()["error"] == "invalid_download_token", label


def test_a_token_for_another_file_or_export_is_refused(make_api: Callable[..., Api]) -> None:
    api = make_api(export_rows_per_file=20, export_max_active_per_org=5)
    key = api.key()
    seed_demo(api, key, 50)
    first = view_export(api, key, start_export(api, key)["id"])
    second = view_export(api, key, start_export(api, key)["id"])
    one, two = first["files"][0], first["files"][1]
    swapped = download(api, key, first["id"], two["name"], one["download_token"])
    assert swapped.json()["error"] == "invalid_download_token"
    moved = download(api, key, second["id"], one["name"], one["download_token"])
    assert moved.json()["error"] == "invalid_download_token"


def test_an_old_token_is_expired(
    finished: tuple[Api, dict[str, str], dict[str, Any]], clock: ManualClock
) -> None:
    api, key, job = finished
    file = job["files"][0]
    clock.now += timedelta(seconds=api.container.settings.download_token_ttl_seconds + 1)
    response = download(api, key, job["id"], file["name"], file["download_token"])
    assert response.status_code == 401
    assert response.json()["error"] == "download_token_expired"
    fresh = view_export(api, key, job["id"])["files"][0]["download_token"]
    assert download(api, key, job["id"], file["name"], fresh).status_code == 200


def test_another_orgs_export_is_a_404_everywhere(
    finished: tuple[Api, dict[str, str], dict[str, Any]],
) -> None:
    api, _, job = finished
    stranger = api.key("stranger")
    file = job["files"][0]
    assert api.client.get(f"{EXPORTS}/{job['id']}", headers=stranger).status_code == 404
    response = download(api, stranger, job["id"], file["name"], file["download_token"])
    assert response.status_code == 404
    assert api.client.get(EXPORTS, headers=stranger).json()["items"] == []


@pytest.mark.parametrize(
    "name",
    [
        "..%2f..%2fmaster.keys",
        "../master.keys",
        "%2Fetc%2Fpasswd",
        "kb-audit-00001.csv%00",  # refused before routing: NUL is in no name
        "x" * 300,
    ],
)
def test_path_tricks_are_a_404_or_400(
    finished: tuple[Api, dict[str, str], dict[str, Any]], name: str
) -> None:
    api, key, job = finished
    token = job["files"][0]["download_token"]
    response = api.client.get(
        f"{EXPORTS}/{job['id']}/download/{name}", params={"token": token}, headers=key
    )
    assert response.status_code == (400 if "%00" in name else 404)
    assert response.json()["error"] in ("not_found", "invalid_request")


@pytest.mark.parametrize("accept", ["gzip, deflate", "zstd"])  # decompressed, or zstd-coded
def test_altered_ciphertext_never_returns_plaintext(
    finished: tuple[Api, dict[str, str], dict[str, Any]], accept: str
) -> None:
    api, key, job = finished
    blobs = api.container.exports.blobs
    [blob] = [k for k in blobs.keys("exports") if "/kb-audit-00001.csv." in k]
    original = b"".join(blobs.read(blob))
    for offset in (10, 60, -20):
        damaged = bytearray(original)
        damaged[offset] ^= 0x01
        put_blob(blobs, blob, bytes(damaged))
        file = view_export(api, key, job["id"])["files"][0]
        response = api.client.get(
            f"{EXPORTS}/{job['id']}/download/{file['name']}",
            params={"token": file["download_token"]},
            headers={**key, "accept-encoding": accept},
        )
        assert response.status_code == 500
        assert response.json()["error"] == "export_file_corrupt"
        put_blob(blobs, blob, original)


@pytest.mark.parametrize("after_chunks", [0, 1])
def test_a_blob_store_failing_under_a_download_is_a_503_not_a_damaged_file(
    finished: tuple[Api, dict[str, str], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    after_chunks: int,
) -> None:
    """Tink reports any failure of the stream it decrypts as its own error: a blob store
    restarting under a download (the soak run's SeaweedFS restart) was answered 500
    export_file_corrupt, as if the file were damaged."""
    api, key, job = finished
    blobs = api.container.exports.blobs
    reading = blobs.read

    def failing(blob: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        yield from itertools.islice(reading(blob, chunk_size=64), after_chunks)
        raise OSError("connection refused")

    monkeypatch.setattr(blobs, "read", failing)
    file = job["files"][0]
    response = download(api, key, job["id"], file["name"], file["download_token"])
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
    assert response.headers["retry-after"]
    monkeypatch.setattr(blobs, "read", reading)
    assert download(api, key, job["id"], file["name"], file["download_token"]).status_code == 200


def test_blob_files_hold_no_plaintext(finished: tuple[Api, dict[str, str], dict[str, Any]]) -> None:
    api, _, _ = finished
    blobs = api.container.exports.blobs
    stored_keys = blobs.keys("exports")
    assert stored_keys
    for blob in stored_keys:
        content = b"".join(blobs.read(blob))
        assert b"retrieval_status" not in content
        assert b"support-agent" not in content


def test_expiry_deletes_blobs_destroys_keys_and_answers_410(
    finished: tuple[Api, dict[str, str], dict[str, Any]], clock: ManualClock
) -> None:
    from kbaudit.services.exports.sweep import sweep

    api, key, job = finished
    file = job["files"][0]
    clock.now += timedelta(hours=api.container.settings.export_ttl_hours, seconds=1)
    assert sweep(api.container.exports).jobs_expired == 1
    expired = view_export(api, key, job["id"])
    assert expired["status"] == "expired"
    assert all(f["download_token"] is None for f in expired["files"])
    response = download(api, key, job["id"], file["name"], file["download_token"])
    assert response.status_code == 410
    assert response.json()["error"] == "export_expired"
    assert api.container.exports.blobs.keys("exports") == []
    with api.container.store.reading() as uow:
        assert uow.exports.job(job["id"]).wrapped_keyset is None  # type: ignore[union-attr]


class DeletionFails:
    """A blob store whose deletions fail, as a store that is down would."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)

    def delete_prefix(self, prefix: str) -> int:
        raise OSError("the blob store is down")


def test_an_export_expires_first_and_its_files_go_when_they_can(
    finished: tuple[Api, dict[str, str], dict[str, Any]], clock: ManualClock
) -> None:
    from kbaudit.services.exports.sweep import sweep

    api, key, job = finished
    deps = api.container.exports
    clock.now += timedelta(hours=api.container.settings.export_ttl_hours, seconds=1)
    with pytest.raises(OSError, match="down"):
        sweep(replace(deps, blobs=DeletionFails(deps.blobs)))
    expired = view_export(api, key, job["id"])
    assert expired["status"] == "expired"
    assert all(f["download_token"] is None for f in expired["files"])
    assert deps.blobs.keys("exports") != []  # left behind, and unreadable: the key is gone
    with api.container.store.reading() as uow:
        assert uow.exports.job(job["id"]).wrapped_keyset is None  # type: ignore[union-attr]
    sweep(deps)
    assert deps.blobs.keys("exports") == []


def test_files_written_before_a_master_key_rotation_still_download(
    tmp_path: Path, make_api: Callable[..., Api]
) -> None:
    api = make_api()
    key = api.key()
    seed_demo(api, key, 20)
    job = start_export(api, key)
    settings = api.container.settings
    same_store = {"data_dir": settings.data_dir}
    if settings.master_key is None:
        assert rotate(settings.data_dir) == 2
    else:
        # Shared keys rotate in the setting every host reads: a new version in front.
        old = settings.master_key.get_secret_value()
        new = base64.b64encode(os.urandom(32)).decode()
        same_store |= {
            "master_key": f"2:{new},{old}",
            "database_url": settings.database_url,
            "blob_url": settings.blob_url,
        }
    rotated = make_api(**same_store)
    assert rotated.container.keyring.current == 2
    file = view_export(rotated, key, job["id"])["files"][0]
    assert file["download_token"].split(".")[1] == "2"
    assert (
        download(rotated, key, job["id"], file["name"], file["download_token"]).status_code == 200
    )


def test_requests_and_downloads_are_in_the_access_log(
    finished: tuple[Api, dict[str, str], dict[str, Any]],
) -> None:
    api, key, job = finished
    file = job["files"][0]
    download(api, key, job["id"], file["name"], file["download_token"])
    download(api, key, job["id"], file["name"], "bad")
    api.container.store.flush_access()
    with api.container.store.reading() as uow:
        entries = uow.access_log.entries(OrgId(1))
    requested = [e for e in entries if e.action == "export_requested"]
    downloaded = [e for e in entries if e.action == "export_downloaded"]
    assert requested[0].details["export_id"] == job["id"]
    assert len(downloaded) == 1
    assert downloaded[0].details["bytes"] > 0
    assert downloaded[0].details["file"] == file["name"]
    assert downloaded[0].outcome == "ok"


def test_unknown_export_id_is_a_404(api: Api) -> None:
    key = api.key()
    assert api.client.get(f"{EXPORTS}/{uuid.uuid4()}", headers=key).status_code == 404
    assert api.client.get(f"{EXPORTS}/not-a-uuid", headers=key).status_code == 422
