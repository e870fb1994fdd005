"""Upgrading carries existing data forward: records written under the old layout (one column
per field, scopes and refs in tables of their own: tests/old_database.py) read back the same
under the new one, as the documents and log leaves today's code makes of them."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import select

from kbaudit.crypto import merkle
from kbaudit.crypto.checkpoint import open_checkpoint
from kbaudit.crypto.keyring import load_keyring
from kbaudit.document import document_of, leaf_of
from kbaudit.domain import RecordIn
from kbaudit.services.verify import read_keys
from kbaudit.store.tables import records
from tests import old_database
from tests.backends import SCALEOUT, databases
from tests.conftest import Api
from tests.helpers import RECORDS
from tests.integration.test_ingest import detail
from tests.old_database import ACTOR, BARE_ID, FULL_ID, KB_A, KB_B, LAST_SEQ, ORG, WRITTEN


@pytest.fixture
def upgraded(tmp_path: Path, make_api: Callable[..., Api]) -> Api:
    data_dir = tmp_path / "old"
    if SCALEOUT:
        url = databases().create_empty()
    else:
        data_dir.mkdir()
        url = f"sqlite:///{data_dir / 'kbaudit.db'}"
        load_keyring(data_dir, None)  # an old data folder holds its master key too
    old_database.build(url)
    return make_api(data_dir=data_dir, database_url=url)


def test_an_upgrade_keeps_every_field_scope_and_ref(upgraded: Api) -> None:
    key = upgraded.key("acme")
    body = detail(upgraded, key, "case-42")
    log = body["log"]
    assert log["id"] == FULL_ID
    assert log["ref"] == "case-42"
    assert log["created_at"].startswith("2026-01-05T10:00:00.000001")
    assert log["intent_recorded_at"].startswith("2026-01-05T09:59:59.5")
    assert log["actor_user_id"] == ACTOR
    assert log["caller"] == "=SUM(A1)"
    assert log["ineligible_counts_by_reason"] == {"stale": 2}
    assert (log["alpha"], log["reranked"], log["top_k"]) == (0.25, True, 8)
    assert [(s["knowledge_base_id"], s["requested"]) for s in body["scopes"]] == [
        (KB_A, True),
        (KB_B, False),
    ]
    assert body["scopes"][0]["effective_serving_status_counts"] == {"ok": 3}
    assert [(r["chunk_id"], r["rank"], r["score"]) for r in body["refs"]] == [(KB_B, 1, 0.875)]
    assert detail(upgraded, key, FULL_ID)["log"]["ref"] == "case-42"
    bare = detail(upgraded, key, "r" + BARE_ID.replace("-", ""))
    assert (bare["log"]["audit_write_status"], bare["scopes"], bare["refs"]) == (
        "intent_recorded",
        [],
        [],
    )


# The days of the two records with something to show; the plain ones come after.
FIRST_DAYS = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-07T00:00:00Z"}


def test_an_upgrade_keeps_the_filters_working(upgraded: Api) -> None:
    key = upgraded.key("acme")
    window = FIRST_DAYS
    for params, expected in (
        ({}, [BARE_ID, FULL_ID]),
        ({"kb_ids": KB_B}, [FULL_ID]),
        ({"actor_user_id": ACTOR}, [FULL_ID]),
        ({"statuses": "hit"}, [FULL_ID]),
    ):
        response = upgraded.client.get(RECORDS, params={**window, **params}, headers=key)
        assert [item["id"] for item in response.json()["items"]] == expected, params


def test_an_upgrade_never_hands_out_an_old_seq_again(upgraded: Api) -> None:
    key = upgraded.key("acme")
    item = {"id": "eeeeeeee-0000-4000-8000-000000000001", "created_at": "2026-01-07T00:00:00Z"}
    assert upgraded.client.post(RECORDS, json={"items": [item]}, headers=key).status_code == 200
    with upgraded.container.store.engine.connect() as connection:
        seqs = connection.execute(select(records.c.seq).order_by(records.c.seq)).scalars()
        assert list(seqs) == [*(seq for seq, _ in WRITTEN), LAST_SEQ + 1]


def test_an_upgrade_logs_the_records_there_are_in_seq_order(upgraded: Api) -> None:
    key = upgraded.key("acme")
    keys = read_keys(upgraded.client.get("/v1/knowledge-base/audit/signing-keys").text)
    note = upgraded.client.get("/v1/knowledge-base/audit/log/checkpoint", headers=key).text
    head, _ = open_checkpoint(note, keys)
    assert head.size == len(WRITTEN)
    for ref, index in (("case-42", 0), (BARE_ID, 1)):
        [entry] = upgraded.client.get(f"{RECORDS}/{ref}/proof", headers=key).json()["entries"]
        assert entry["leaf_index"] == index
        leaf = merkle.leaf_hash(base64.b64decode(entry["leaf"]))
        path = [base64.b64decode(h) for h in entry["inclusion_proof"]]
        assert merkle.verify_inclusion(index, head.size, leaf, path, head.root)


def test_an_upgrade_counts_the_records_there_are_in_its_statistics(upgraded: Api) -> None:
    stats = upgraded.client.get(
        "/v1/knowledge-base/audit/stats", params=FIRST_DAYS, headers=upgraded.key("acme")
    ).json()
    assert [(group["key"], group["count"]) for group in stats["totals"]] == [("hit", 1), (None, 1)]


def tree_hash(leaves: list[bytes]) -> bytes:
    """RFC 9162's Merkle tree hash, written out plainly: the test's own, not kbaudit's."""
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    joined = tree_hash(leaves[:split]) + tree_hash(leaves[split:])
    return hashlib.sha256(b"\x01" + joined).digest()


def test_an_upgrade_ends_with_the_documents_and_leaves_of_todays_code(upgraded: Api) -> None:
    """The frozen copies the migrations run (kbaudit.store.migrations.frozen) make what the
    live code makes of the same records: byte for byte, leaf for leaf."""
    today = [document_of(msgspec.convert(record, RecordIn)) for _, record in WRITTEN]
    with upgraded.container.store.engine.connect() as connection:
        stored = connection.execute(select(records.c.document).order_by(records.c.seq)).scalars()
        assert list(stored) == [document.body for document in today]
    leaves = [
        hashlib.sha256(
            b"\x00" + leaf_of(ORG, doc.id_text, doc.audit_write_status, doc.body)
        ).digest()
        for doc in today
    ]
    key = upgraded.key("acme")
    keys = read_keys(upgraded.client.get("/v1/knowledge-base/audit/signing-keys").text)
    note = upgraded.client.get("/v1/knowledge-base/audit/log/checkpoint", headers=key).text
    head, _ = open_checkpoint(note, keys)
    assert len(leaves) > 256  # the log spans two tiles
    assert head.root == tree_hash(leaves)
