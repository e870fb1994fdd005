"""The tamper-evident log: one RFC 9162 Merkle tree per organization, one leaf per accepted
write of a record (its creation, then each forward transition), signed checkpoints, and the
proofs that let anyone check a record is in it and that it only ever grew.

Leaves are appended inside the write's own transaction, while the organization's writer lock
is held (see ``RecordRepository.lock_for_write``): indexes are dense and in commit order.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from kbaudit.crypto import merkle
from kbaudit.crypto.checkpoint import Checkpoint, origin_of
from kbaudit.crypto.signing import SigningKeys
from kbaudit.document import RecordDocument, leaf_of
from kbaudit.domain import Caller, OrgId
from kbaudit.errors import InvalidRequest, NotFound
from kbaudit.services.access import record_access
from kbaudit.services.clock import Clock
from kbaudit.store.records import StoredRecord
from kbaudit.store.unit_of_work import Store, UnitOfWork

Write = tuple[StoredRecord | None, RecordDocument]  # (the record as stored before, if it was)


def append_writes(uow: UnitOfWork, org_id: OrgId, writes: Sequence[Write]) -> list[int]:
    """Add a leaf for each accepted write, in order; returns their indexes."""
    if not writes:
        return []
    org_uuid = uow.keys.organization(org_id).uuid
    size = uow.log.size(org_id)
    leaves = [
        merkle.leaf_hash(leaf_of(org_uuid, doc.id_text, doc.audit_write_status, doc.body))
        for _, doc in writes
    ]
    uow.log.append(org_id, size, leaves)
    replaced = [
        (old, leaf_of(org_uuid, str(old.id), old.audit_write_status, old.document))
        for old, _ in writes
        if old is not None
    ]
    uow.log.keep_superseded(org_id, replaced)
    return list(range(size, size + len(writes)))


def tree_root(uow: UnitOfWork, org_id: OrgId, size: int) -> bytes:
    blocks = merkle.root_blocks(size)
    return merkle.range_hash(0, size, uow.log.perfect(org_id, blocks))


def checkpoint_note(uow: UnitOfWork, keys: SigningKeys, org_id: OrgId, size: int) -> str:
    """The organization's log at ``size`` leaves, as a signed tlog-checkpoint note."""
    org_uuid = uow.keys.organization(org_id).uuid
    checkpoint = Checkpoint(origin_of(org_uuid), size, tree_root(uow, org_id, size))
    return keys.sign_note(checkpoint.text())


def current_checkpoint(store: Store, keys: SigningKeys, org_id: OrgId) -> str:
    with store.reading() as uow:
        return checkpoint_note(uow, keys, org_id, uow.log.size(org_id))


@dataclass(frozen=True, slots=True)
class LeafProof:
    leaf_index: int
    leaf: bytes
    inclusion_proof: list[bytes]


def record_proofs(
    store: Store, clock: Clock, caller: Caller, ref_or_id: str, tree_size: int | None
) -> tuple[int, list[LeafProof]]:
    """Every write of the record within the tree of ``tree_size`` leaves (default: now),
    each with its inclusion proof. The leaves hold the record: the read is logged as a
    detail read is."""
    org_id = caller.org_id
    with store.reading() as uow:
        size = _size_within(uow, org_id, tree_size, "tree_size")
        record = uow.records.find_stored(org_id, ref_or_id)
        within = [] if record is None else _leaves_of(uow, org_id, record, size)
        paths = [merkle.inclusion_ranges(index, size) for index, _ in within]
        perfect = uow.log.perfect(org_id, merkle.blocks_for([r for p in paths for r in p]))
    record_access(
        store,
        clock,
        caller,
        "proof",
        result_count=len(within),
        outcome="ok" if within else "not_found",
        details={"ref": ref_or_id[:128], "tree_size": size},
    )
    if record is None:
        raise NotFound("no retrieval audit record has that ref or id")
    if not within:
        raise NotFound(f"the record has no write within the first {size} leaves of the log")
    return size, [
        LeafProof(index, data, merkle.hashes_of(path, perfect))
        for (index, data), path in zip(within, paths, strict=True)
    ]


def consistency_proof(store: Store, org_id: OrgId, first: int, second: int) -> list[bytes]:
    with store.reading() as uow:
        _size_within(uow, org_id, second, "second")
        if first > second:
            raise InvalidRequest("first must not exceed second", field=("query", "first"))
        ranges = merkle.consistency_ranges(first, second)
        perfect = uow.log.perfect(org_id, merkle.blocks_for(ranges))
    return merkle.hashes_of(ranges, perfect)


def encoded(hashes: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(digest).decode() for digest in hashes]


def _size_within(uow: UnitOfWork, org_id: OrgId, asked: int | None, name: str) -> int:
    size = uow.log.size(org_id)
    if asked is None:
        return size
    if asked > size:
        raise InvalidRequest(
            f"{name} is {asked}, but the log holds {size} leaves", field=("query", name)
        )
    return asked


def _leaves_of(
    uow: UnitOfWork, org_id: OrgId, record: StoredRecord, size: int
) -> list[tuple[int, bytes]]:
    """(leaf index, leaf data) of the record's writes within the first ``size`` leaves."""
    leaves = uow.log.superseded(org_id, record.id)
    if record.leaf_index is not None:
        org_uuid = uow.keys.organization(org_id).uuid
        data = leaf_of(org_uuid, str(record.id), record.audit_write_status, record.document)
        leaves.append((record.leaf_index, data))
    return [(index, data) for index, data in leaves if index < size]


@dataclass(frozen=True, slots=True)
class ProofStatus:
    """Where the record's latest write sits in the log, and whether its inclusion proof leads
    to the log's root: what the console shows beside a record."""

    leaf_index: int
    tree_size: int
    verified: bool


def proof_status(store: Store, clock: Clock, caller: Caller, ref_or_id: str) -> ProofStatus:
    with store.reading() as uow:
        size = uow.log.size(caller.org_id)
        root = tree_root(uow, caller.org_id, size)
    size, proofs = record_proofs(store, clock, caller, ref_or_id, size)
    latest = proofs[-1]
    leaf = merkle.leaf_hash(latest.leaf)
    verified = merkle.verify_inclusion(latest.leaf_index, size, leaf, latest.inclusion_proof, root)
    return ProofStatus(latest.leaf_index, size, verified)
