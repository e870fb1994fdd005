"""Upgrading carries existing data forward: records written under the old layout (one column
per field, scopes and refs in tables of their own) read back the same under the new one."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from kbaudit.crypto import merkle
from kbaudit.crypto.checkpoint import open_checkpoint
from kbaudit.services.verify import read_keys
from kbaudit.store.engine import create_store_engine
from kbaudit.store.migrate import alembic_config
from tests.backends import SCALEOUT, databases
from tests.conftest import Api
from tests.helpers import RECORDS
from tests.integration.test_ingest import detail

ORG = "11111111-1111-4111-8111-111111111111"
KB_A, KB_B = "aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"
ACTOR = "bbbbbbbb-0000-4000-8000-000000000001"
FULL_ID = "cccccccc-0000-4000-8000-000000000001"
BARE_ID = "cccccccc-0000-4000-8000-000000000002"
MONTH = "FOR VALUES FROM ('2026-01-01T00:00:00Z') TO ('2026-02-01T00:00:00Z')"
OLD_ROWS = [
    (
        "INSERT INTO organizations (id, uuid, name, created_at) "
        "VALUES (1, :org, 'acme', '2026-01-01T00:00:00.000000Z')",
        {"org": ORG},
    ),
    (
        "INSERT INTO retrieval_records (seq, org_id, ref, id, created_at, retrieval_status, "
        "audit_write_status, actor_user_id, caller, ineligible_counts_by_reason, alpha, "
        "reranked, top_k, intent_recorded_at) VALUES (5, 1, 'case-42', :id, "
        "'2026-01-05T10:00:00.000001Z', 'hit', 'finalized', :actor, '=SUM(A1)', "
        "'{\"stale\": 2}', 0.25, :flag, 8, '2026-01-05T09:59:59.500000Z')",
        {"id": FULL_ID, "actor": ACTOR, "flag": True},
    ),
    (
        "INSERT INTO retrieval_scopes (org_id, record_id, created_at, position, "
        "knowledge_base_id, requested, result_count, effective_serving_status_counts) "
        "VALUES (1, :id, '2026-01-05T10:00:00.000001Z', :position, :kb, :flag, 3, '{\"ok\": 3}')",
        [
            {"id": FULL_ID, "position": 0, "kb": KB_A, "flag": True},
            {"id": FULL_ID, "position": 1, "kb": KB_B, "flag": False},
        ],
    ),
    (
        "INSERT INTO retrieval_refs (org_id, record_id, created_at, position, chunk_id, rank, "
        "score) VALUES (1, :id, '2026-01-05T10:00:00.000001Z', 0, :chunk, 1, 0.875)",
        {"id": FULL_ID, "chunk": KB_B},
    ),
    (
        "INSERT INTO retrieval_records (seq, org_id, ref, id, created_at, audit_write_status) "
        "VALUES (9, 1, :ref, :id, '2026-01-06T00:00:00.000000Z', 'intent_recorded')",
        {"id": BARE_ID, "ref": "r" + BARE_ID.replace("-", "")},
    ),
]


def _write_old_layout(url: str) -> None:
    engine = create_store_engine(url)
    try:
        command.upgrade(alembic_config(engine), "0005")
        with engine.begin() as connection:
            if SCALEOUT:
                for table in ("retrieval_records", "retrieval_scopes", "retrieval_refs"):
                    connection.execute(
                        text(f"CREATE TABLE {table}_p2026_01 PARTITION OF {table} {MONTH}")
                    )
                connection.execute(text("SELECT setval('retrieval_records_seq_seq', 20)"))
            for sql, params in OLD_ROWS:
                connection.execute(text(sql), params)
            if not SCALEOUT:  # a purge had freed seqs up to 20: none may come back
                connection.execute(
                    text("UPDATE sqlite_sequence SET seq = 20 WHERE name = 'retrieval_records'")
                )
    finally:
        engine.dispose()


@pytest.fixture
def upgraded(tmp_path: Path, make_api: Callable[..., Api]) -> Api:
    data_dir = tmp_path / "old"
    if SCALEOUT:
        url = databases().create_empty()
    else:
        data_dir.mkdir()
        url = f"sqlite:///{data_dir / 'kbaudit.db'}"
    _write_old_layout(url)
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


def test_an_upgrade_keeps_the_filters_working(upgraded: Api) -> None:
    key = upgraded.key("acme")
    window = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
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
    item = {"id": "dddddddd-0000-4000-8000-000000000001", "created_at": "2026-01-07T00:00:00Z"}
    assert upgraded.client.post(RECORDS, json={"items": [item]}, headers=key).status_code == 200
    with upgraded.container.store.reading() as uow:
        seqs = uow.records._connection.execute(text("SELECT seq FROM records ORDER BY seq"))
        assert [row[0] for row in seqs] == [5, 9, 21]


def test_an_upgrade_logs_the_records_there_are_in_seq_order(upgraded: Api) -> None:
    key = upgraded.key("acme")
    keys = read_keys(upgraded.client.get("/v1/knowledge-base/audit/signing-keys").text)
    note = upgraded.client.get("/v1/knowledge-base/audit/log/checkpoint", headers=key).text
    head, _ = open_checkpoint(note, keys)
    assert head.size == 2
    for ref, index in (("case-42", 0), (BARE_ID, 1)):
        [entry] = upgraded.client.get(f"{RECORDS}/{ref}/proof", headers=key).json()["entries"]
        assert entry["leaf_index"] == index
        leaf = merkle.leaf_hash(base64.b64decode(entry["leaf"]))
        path = [base64.b64decode(h) for h in entry["inclusion_proof"]]
        assert merkle.verify_inclusion(index, head.size, leaf, path, head.root)


def test_an_upgrade_counts_the_records_there_are_in_its_statistics(upgraded: Api) -> None:
    window = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
    stats = upgraded.client.get(
        "/v1/knowledge-base/audit/stats", params=window, headers=upgraded.key("acme")
    ).json()
    assert [(group["key"], group["count"]) for group in stats["totals"]] == [("hit", 1), (None, 1)]
