"""The tamper-evident log through its routes, checked as an outsider would: with the public
keys and RFC 9162 verification only."""

from __future__ import annotations

import base64
import threading
import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest

from kbaudit.crypto import merkle
from kbaudit.crypto.checkpoint import Checkpoint, open_checkpoint
from kbaudit.crypto.signing import PublicKey
from kbaudit.domain import OrgId
from kbaudit.services.ingest import ingest_records
from kbaudit.services.retention import purge
from kbaudit.services.verify import read_keys
from tests.conftest import Api, ManualClock
from tests.helpers import RECORDS, record

AUDIT = "/v1/knowledge-base/audit"
POLICY = "/v1/knowledge-base/retention-policy"


def keys_of(api: Api) -> list[PublicKey]:
    response = api.client.get(f"{AUDIT}/signing-keys")
    assert response.status_code == 200
    return read_keys(response.text)


def checkpoint(api: Api, key: dict[str, str]) -> Checkpoint:
    response = api.client.get(f"{AUDIT}/log/checkpoint", headers=key)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    head, _ = open_checkpoint(response.text, keys_of(api))
    return head


def write(api: Api, key: dict[str, str], *items: dict[str, Any]) -> None:
    response = api.client.post(RECORDS, json={"items": list(items)}, headers=key)
    assert response.status_code == 200, response.text


def proofs(api: Api, key: dict[str, str], ref: str, **params: int) -> dict[str, Any]:
    response = api.client.get(f"{RECORDS}/{ref}/proof", params=params, headers=key)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def verified_leaves(body: dict[str, Any], head: Checkpoint) -> list[dict[str, Any]]:
    """The leaves of a proof answer, each proved against the checkpoint's root."""
    assert body["tree_size"] == head.size
    leaves = []
    for entry in body["entries"]:
        data = base64.b64decode(entry["leaf"])
        path = [base64.b64decode(h) for h in entry["inclusion_proof"]]
        assert merkle.verify_inclusion(
            entry["leaf_index"], head.size, merkle.leaf_hash(data), path, head.root
        )
        leaves.append({"index": entry["leaf_index"], **orjson.loads(data)})
    return leaves


def test_signing_keys_are_public_and_describe_one_key(api: Api) -> None:
    [listed] = api.client.get(f"{AUDIT}/signing-keys").json()["keys"]
    assert (listed["kty"], listed["crv"], listed["status"]) == ("OKP", "Ed25519", "active")
    [key] = keys_of(api)
    assert base64.urlsafe_b64decode(listed["x"] + "=") == key.raw
    assert listed["kid"] == key.kid
    assert listed["vkey"].startswith(f"kbaudit+{key.kid}+")


def test_each_accepted_write_is_one_leaf_and_proves_against_the_checkpoint(api: Api) -> None:
    key = api.key()
    assert checkpoint(api, key).size == 0
    first = record(audit_write_status="intent_recorded", ref="run-1")
    write(api, key, first)
    write(api, key, first)  # unchanged: no leaf
    at_one = checkpoint(api, key)
    assert at_one.size == 1
    write(api, key, {**first, "audit_write_status": "finalized"}, record())
    head = checkpoint(api, key)
    assert head.size == 3
    assert head.origin.startswith("kbaudit/")

    leaves = verified_leaves(proofs(api, key, "run-1"), head)
    assert [leaf["index"] for leaf in leaves] == [0, 1]
    assert [leaf["audit_write_status"] for leaf in leaves] == ["intent_recorded", "finalized"]
    assert {leaf["record_id"] for leaf in leaves} == {first["id"]}
    assert {leaf["organization_id"] for leaf in leaves} == {head.origin.removeprefix("kbaudit/")}
    detail = api.client.get(f"{RECORDS}/run-1", headers=key).json()
    assert leaves[-1]["record"] == {
        **detail["log"],
        "scopes": detail["scopes"],
        "refs": detail["refs"],
    }

    older = verified_leaves(proofs(api, key, first["id"], tree_size=1), at_one)
    assert [leaf["audit_write_status"] for leaf in older] == ["intent_recorded"]


def test_wrong_sizes_and_unknown_records_are_refused(api: Api) -> None:
    key, other = api.key(), api.key(org="globex")
    mine = record()
    write(api, key, mine)
    write(api, other, record())
    cases = [
        (f"{RECORDS}/{mine['id']}/proof", {"tree_size": 2}, 422),
        (f"{RECORDS}/{uuid.uuid4()}/proof", {}, 404),
        (f"{AUDIT}/log/consistency", {"first": 1, "second": 2}, 422),
        (f"{AUDIT}/log/consistency", {"first": 2, "second": 1}, 422),
        (f"{AUDIT}/log/consistency", {"first": -1, "second": 1}, 422),
    ]
    for path, params, status in cases:
        response = api.client.get(path, params=params, headers=key)
        assert response.status_code == status, (path, params, response.text)
        body = response.json()
        assert body.get("error") or body["detail"][0]["msg"]
    # Another organization's record is not there at all, whatever its own log holds.
    assert api.client.get(f"{RECORDS}/{mine['id']}/proof", headers=other).status_code == 404
    assert api.client.get(f"{AUDIT}/log/checkpoint").status_code == 401


def test_every_checkpoint_is_consistent_with_every_later_one(api: Api) -> None:
    key = api.key()
    heads = [checkpoint(api, key)]
    for batch in (1, 2, 5, 1, 9):
        write(api, key, *(record() for _ in range(batch)))
        heads.append(checkpoint(api, key))
    for older in heads:
        for newer in heads:
            if older.size > newer.size:
                continue
            params = {"first": older.size, "second": newer.size}
            body = api.client.get(f"{AUDIT}/log/consistency", params=params, headers=key).json()
            proof = [base64.b64decode(h) for h in body["proof"]]
            assert merkle.verify_consistency(older.size, newer.size, older.root, newer.root, proof)


def test_a_purge_deletes_content_but_never_changes_the_tree(api: Api, clock: ManualClock) -> None:
    key = api.key()
    old = record(created_at=(clock.now - timedelta(days=100)).isoformat().replace("+00:00", "Z"))
    old_intent = {**old, "audit_write_status": "intent_recorded"}
    kept = record(created_at=(clock.now - timedelta(days=1)).isoformat().replace("+00:00", "Z"))
    write(api, key, old_intent)
    write(api, key, old, kept)
    before = checkpoint(api, key)
    assert api.client.put(POLICY, json={"retention_days": 90}, headers=key).status_code == 200
    assert purge(api.container.store, clock, api.container.archiver) == 1

    after = checkpoint(api, key)
    assert (after.size, after.root) == (before.size, before.root)
    assert api.client.get(f"{RECORDS}/{old['id']}/proof", headers=key).status_code == 404
    with api.container.store.reading() as uow:
        assert uow.log.superseded(OrgId(1), uuid.UUID(old["id"])) == []
    write(api, key, record())
    newer = checkpoint(api, key)
    params = {"first": before.size, "second": newer.size}
    body = api.client.get(f"{AUDIT}/log/consistency", params=params, headers=key).json()
    proof = [base64.b64decode(h) for h in body["proof"]]
    assert merkle.verify_consistency(before.size, newer.size, before.root, newer.root, proof)
    assert verified_leaves(proofs(api, key, kept["id"]), newer)


def test_leaf_indexes_are_dense_and_ordered_under_concurrent_writers(api: Api) -> None:
    key = api.key()
    write(api, key, record())  # makes the organization
    org_id = OrgId(1)
    written: list[dict[str, Any]] = []
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(6):
                batch = [record(audit_write_status="intent_recorded") for _ in range(4)]
                ingest_records(api.container.store, api.container.clock, org_id, _records(batch))
                finals = [{**item, "audit_write_status": "finalized"} for item in batch[:2]]
                ingest_records(api.container.store, api.container.clock, org_id, _records(finals))
                written.extend(batch)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    head = checkpoint(api, key)
    assert head.size == 1 + 6 * 6 * (4 + 2)

    leaves = [
        leaf for item in written for leaf in verified_leaves(proofs(api, key, item["id"]), head)
    ]
    indexes = sorted(leaf["index"] for leaf in leaves)
    assert indexes == list(range(1, head.size))
    for item in written:  # each record's writes are in the order they were made
        statuses = [
            leaf["audit_write_status"]
            for leaf in sorted(leaves, key=lambda leaf: leaf["index"])
            if leaf["record_id"] == item["id"]
        ]
        assert statuses in (["intent_recorded"], ["intent_recorded", "finalized"])


def _records(items: list[dict[str, Any]]) -> list[Any]:
    import msgspec

    from kbaudit.domain import RecordIn

    return [msgspec.convert(item, RecordIn) for item in items]


# 600 then 300 leaves: past two full tiles of leaves, growing a partial one, with nodes on
# the second tile level.
@pytest.mark.parametrize("batches", [[], [1], [2], [7], [600, 300]])
def test_the_checkpoint_root_is_the_tree_of_the_leaves(api: Api, batches: list[int]) -> None:
    key = api.key()
    items = []
    for count in batches:
        batch = [record() for _ in range(count)]
        write(api, key, *batch)
        items += batch
    size = len(items)
    head = checkpoint(api, key)
    leaves = sorted(
        (entry["leaf_index"], base64.b64decode(entry["leaf"]))
        for item in items
        for entry in proofs(api, key, item["id"])["entries"]
    )
    hashes = [merkle.leaf_hash(data) for _, data in leaves]
    perfect: dict[merkle.Block, bytes] = {}
    for n, leaf in enumerate(hashes):
        perfect.update(merkle.append_leaves(n, [leaf], perfect.__getitem__))
    assert head.root == merkle.range_hash(0, size, perfect)
