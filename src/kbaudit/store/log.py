"""Each organization's Merkle log: perfect-subtree hashes and the leaves of replaced writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select, tuple_

from kbaudit.crypto.merkle import Block
from kbaudit.domain import OrgId
from kbaudit.store.records import StoredRecord
from kbaudit.store.tables import log_nodes, records, superseded_leaves


class LogRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def size(self, org_id: OrgId) -> int:
        n = log_nodes.c
        last = self._connection.execute(
            select(func.max(n.idx)).where(n.org_id == org_id, n.level == 0)
        ).scalar_one()
        return 0 if last is None else int(last) + 1

    def perfect(self, org_id: OrgId, blocks: Iterable[Block]) -> dict[Block, bytes]:
        """The hashes of these perfect subtrees, as far as they exist."""
        wanted = list(blocks)
        if not wanted:
            return {}
        n = log_nodes.c
        query = select(n.level, n.idx, n.hash).where(
            n.org_id == org_id, tuple_(n.level, n.idx).in_(wanted)
        )
        return {(row.level, row.idx): row.hash for row in self._connection.execute(query)}

    def add_nodes(self, org_id: OrgId, nodes: Mapping[Block, bytes]) -> None:
        rows = [
            {"org_id": org_id, "level": level, "idx": idx, "hash": digest}
            for (level, idx), digest in nodes.items()
        ]
        if rows:
            self._connection.execute(insert(log_nodes), rows)

    def keep_superseded(
        self, org_id: OrgId, replaced: Sequence[tuple[StoredRecord, bytes]]
    ) -> None:
        """Keep the leaf data of writes that later writes replace: (record as it was, data)."""
        rows = [
            {
                "org_id": org_id,
                "record_id": old.id.bytes,
                "leaf_index": old.leaf_index,
                "created_at": old.created_at,
                "data": data,
            }
            for old, data in replaced
            if old.leaf_index is not None
        ]
        if rows:
            self._connection.execute(insert(superseded_leaves), rows)

    def superseded(self, org_id: OrgId, record_id: uuid.UUID) -> list[tuple[int, bytes]]:
        """(leaf index, leaf data) of the record's replaced writes, oldest first."""
        s = superseded_leaves.c
        query = (
            select(s.leaf_index, s.data)
            .where(s.org_id == org_id, s.record_id == record_id.bytes)
            .order_by(s.leaf_index)
        )
        return [(row.leaf_index, row.data) for row in self._connection.execute(query)]

    def forget(self, org_id: OrgId, record_ids: Sequence[uuid.UUID]) -> None:
        """A purge: the replaced writes of these records go with them. Hashes stay."""
        s = superseded_leaves.c
        for offset in range(0, len(record_ids), 500):
            chunk = [record_id.bytes for record_id in record_ids[offset : offset + 500]]
            self._connection.execute(
                superseded_leaves.delete().where(s.org_id == org_id, s.record_id.in_(chunk))
            )

    def forget_orphans(self) -> None:
        """After whole months of records went at once: their replaced writes go too."""
        s, r = superseded_leaves.c, records.c
        alive: Any = select(r.id).where(r.org_id == s.org_id, r.id == s.record_id).exists()
        self._connection.execute(superseded_leaves.delete().where(~alive))
