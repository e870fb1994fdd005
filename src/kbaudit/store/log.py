"""Each organization's Merkle log, stored as tiles, and the leaves of replaced writes.

A tile (as in C2SP tlog-tiles, height 8) holds the hashes of up to 256 consecutive nodes of
one tree level: tile level 0 holds leaf hashes, tile level 1 the nodes of 256 leaves each,
and so on. Any perfect subtree's hash is a fold of at most 128 hashes of one tile, so roots
and proofs read a few rows; and appending 1,000 leaves writes a handful of rows rather than
two a leaf. The last tile of each level grows as leaves come.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select

from kbaudit.crypto import merkle
from kbaudit.crypto.merkle import Block, node_hash
from kbaudit.domain import OrgId
from kbaudit.store.records import StoredRecord
from kbaudit.store.tables import log_tiles, records, superseded_leaves

HEIGHT = 8
WIDTH = 1 << HEIGHT
HASH = 32
Tile = tuple[int, int]  # (tile level, index)


def tile_of(block: Block) -> tuple[Tile, int, int]:
    """Where a perfect subtree's nodes are: its tile and the slice [start, end) in it."""
    level, index = block
    tile_level, height = divmod(level, HEIGHT)
    first = index << height  # the subtree's first node at the tile's own tree level
    start = first % WIDTH
    return (tile_level, first // WIDTH), start, start + (1 << height)


def block_from_tile(block: Block, hashes: bytes) -> bytes:
    _, start, end = tile_of(block)
    if len(hashes) < end * HASH:
        raise KeyError(block)  # not (yet) a complete subtree of the log
    nodes = [hashes[n * HASH : (n + 1) * HASH] for n in range(start, end)]
    while len(nodes) > 1:
        nodes = [node_hash(nodes[n], nodes[n + 1]) for n in range(0, len(nodes), 2)]
    return nodes[0]


def tile_appends(made: Mapping[Block, bytes]) -> dict[Tile, bytes]:
    """What new perfect subtrees add to the tiles: the hashes of those at tile levels, in
    order, by tile. Nodes in between are not kept: they are folds of a tile."""
    grown: dict[Tile, list[tuple[int, bytes]]] = {}
    for (level, index), digest in made.items():
        if level % HEIGHT == 0:
            tile, start, _ = tile_of((level, index))
            grown.setdefault(tile, []).append((start, digest))
    return {tile: b"".join(d for _, d in sorted(parts)) for tile, parts in grown.items()}


class LogRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def size(self, org_id: OrgId) -> int:
        t = log_tiles.c
        last = self._connection.execute(
            select(t.idx, t.hashes)
            .where(t.org_id == org_id, t.level == 0)
            .order_by(t.idx.desc())
            .limit(1)
        ).one_or_none()
        return 0 if last is None else last.idx * WIDTH + len(last.hashes) // HASH

    def perfect(self, org_id: OrgId, blocks: Iterable[Block]) -> dict[Block, bytes]:
        """The hashes of these perfect subtrees, as far as the log holds them whole."""
        wanted = list(blocks)
        tiles = self._tiles(org_id, {tile_of(block)[0] for block in wanted})
        found = {}
        for block in wanted:
            hashes = tiles.get(tile_of(block)[0])
            if hashes is not None and len(hashes) >= tile_of(block)[2] * HASH:
                found[block] = block_from_tile(block, hashes)
        return found

    def append(self, org_id: OrgId, size: int, leaves: Sequence[bytes]) -> None:
        """Append leaf hashes to the organization's log of ``size`` leaves. The tiles that
        grow are the partial ones, which hold the tree's frontier: they are read once."""
        frontier = merkle.root_blocks(size)
        tiles = self._tiles(org_id, {tile_of(block)[0] for block in frontier})
        known = {block: block_from_tile(block, tiles[tile_of(block)[0]]) for block in frontier}
        t = log_tiles.c
        for tile, hashes in tile_appends(
            merkle.append_leaves(size, leaves, known.__getitem__)
        ).items():
            if tile in tiles:
                self._connection.execute(
                    log_tiles.update()
                    .where(t.org_id == org_id, t.level == tile[0], t.idx == tile[1])
                    .values(hashes=tiles[tile] + hashes)
                )
            else:
                self._connection.execute(
                    insert(log_tiles).values(
                        org_id=org_id, level=tile[0], idx=tile[1], hashes=hashes
                    )
                )

    def _tiles(self, org_id: OrgId, tiles: set[Tile]) -> dict[Tile, bytes]:
        """One query a tile level: ``level = ? AND idx IN (...)`` walks the key, where an OR
        of (level, idx) pairs has SQLite read every tile of the organization."""
        t = log_tiles.c
        found = {}
        for level in {level for level, _ in tiles}:
            indexes = [idx for tile_level, idx in tiles if tile_level == level]
            query = select(t.idx, t.hashes).where(
                t.org_id == org_id, t.level == level, t.idx.in_(indexes)
            )
            for row in self._connection.execute(query):
                found[(level, row.idx)] = row.hashes
        return found

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
