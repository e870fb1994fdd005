"""The log's tiles hold what the whole tree would, for trees past two tile levels."""

from __future__ import annotations

import random

from kbaudit.crypto import merkle
from kbaudit.store.log import HASH, WIDTH, block_from_tile, tile_appends, tile_of


def test_tiles_grown_batch_by_batch_give_every_perfect_subtree() -> None:
    leaves = [merkle.leaf_hash(n.to_bytes(4, "big")) for n in range(70_000)]
    every: dict[merkle.Block, bytes] = {}
    tiles: dict[tuple[int, int], bytes] = {}
    size = 0
    for batch in (1, 255, 1, 999, 1000, 66_000, 1744):
        made = merkle.append_leaves(size, leaves[size : size + batch], every.__getitem__)
        every.update(made)
        for tile, hashes in tile_appends(made).items():
            tiles[tile] = tiles.get(tile, b"") + hashes
        size += batch
        last = max(idx for level, idx in tiles if level == 0)
        assert last * WIDTH + len(tiles[(0, last)]) // HASH == size

    assert size == len(leaves)
    assert len(tiles[(2, 0)]) == HASH  # one node of 65,536 leaves: the third tile level
    for block in random.Random(3).sample(sorted(every), 3000):
        assert block_from_tile(block, tiles[tile_of(block)[0]]) == every[block]
    root = merkle.range_hash(0, size, every)
    blocks = merkle.root_blocks(size)
    from_tiles = {block: block_from_tile(block, tiles[tile_of(block)[0]]) for block in blocks}
    assert merkle.range_hash(0, size, from_tiles) == root
