"""An organization's Merkle log as revision 0007 began it: RFC 9162 hashes of each record's
leaf data, kept in tiles of 256 hashes of one tree level (tile level ``n`` holds the nodes at
tree level ``8n``)."""

from __future__ import annotations

import hashlib

import orjson
import sqlalchemy as sa

WIDTH = 256
HASH = 32


def leaf_data(org_uuid: str, record_id: str, audit_write_status: str, document: str) -> bytes:
    """One write of a record as RFC 8785 JSON, the document (canonical already) inside."""
    return b"".join(
        (
            b'{"audit_write_status":',
            orjson.dumps(audit_write_status),
            b',"organization_id":"',
            org_uuid.encode(),
            b'","record":',
            document.encode(),
            b',"record_id":"',
            record_id.encode(),
            b'"}',
        )
    )


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class NewLog:
    """Writes an empty organization's log, leaf after leaf. A tile is written once it is
    full, and the partial ones at ``finish``; a full tile's subtree hash is a node of the
    tile level above."""

    def __init__(self, bind: sa.Connection, org_id: int) -> None:
        self._bind = bind
        self._org_id = org_id
        self._open: list[bytearray] = []  # each tile level's partial tile
        self._index: list[int] = []  # and its index

    def append(self, leaves: list[bytes]) -> None:
        for leaf in leaves:
            self._add(0, leaf)

    def finish(self) -> None:
        for level, hashes in enumerate(self._open):
            if hashes:
                self._write(level, self._index[level], bytes(hashes))

    def _add(self, level: int, digest: bytes) -> None:
        if level == len(self._open):
            self._open.append(bytearray())
            self._index.append(0)
        tile = self._open[level]
        tile += digest
        if len(tile) < WIDTH * HASH:
            return
        self._write(level, self._index[level], bytes(tile))
        nodes = [bytes(tile[n : n + HASH]) for n in range(0, len(tile), HASH)]
        while len(nodes) > 1:
            nodes = [node_hash(nodes[n], nodes[n + 1]) for n in range(0, len(nodes), 2)]
        tile.clear()
        self._index[level] += 1
        self._add(level + 1, nodes[0])

    def _write(self, level: int, index: int, hashes: bytes) -> None:
        self._bind.execute(
            sa.text(
                "INSERT INTO log_tiles (org_id, level, idx, hashes) "
                "VALUES (:org, :level, :idx, :hashes)"
            ),
            {"org": self._org_id, "level": level, "idx": index, "hashes": hashes},
        )
