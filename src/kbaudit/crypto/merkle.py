"""RFC 9162 section 2.1 Merkle trees, over hashes kept somewhere else.

The server never holds a whole tree. It keeps the hash of every *perfect* subtree (2^level
leaves starting at a multiple of 2^level), and every hash an RFC 9162 proof or root needs is
a right fold of a few of those. So the proof functions here return *ranges* of leaves; the
caller looks up the perfect subtrees those ranges decompose into (``blocks_of``), in one
query, and folds them (``range_hash``). The verifiers need only the proof's hashes: they are
what ``kbaudit verify`` and an auditor's own tools run.

pymerkle was considered: its proofs are not in RFC 9162's form and it hashes ranges from
leaves, which costs a pass over a million leaves in a process that has not cached them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

Range = tuple[int, int]  # leaves [start, end)
Block = tuple[int, int]  # a perfect subtree: (level, index); it covers [index << level, ...)

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(size: int) -> int:
    """The largest power of two smaller than ``size`` (size > 1): where RFC 9162 splits."""
    return 1 << ((size - 1).bit_length() - 1)


def blocks_of(start: int, end: int) -> list[Block]:
    """The perfect subtrees that make up ``[start, end)``, largest first. For every range an
    RFC 9162 recursion produces, this is how the recursion itself would split it."""
    blocks = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        blocks.append((level, start >> level))
        start += 1 << level
    return blocks


def range_hash(start: int, end: int, perfect: Mapping[Block, bytes]) -> bytes:
    """MTH(D[start:end]) from the hashes of its perfect subtrees."""
    if start == end:
        return EMPTY_ROOT
    hashes = [perfect[block] for block in blocks_of(start, end)]
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def root_blocks(size: int) -> list[Block]:
    return blocks_of(0, size)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """RFC 9162 2.1.3.1 PATH(index, D[size]), as the ranges whose hashes make it, leaf end
    first."""
    if not 0 <= index < size:
        raise ValueError("the leaf index must be below the tree size")
    path = []
    start, end = 0, size
    while end - start > 1:
        middle = start + split_point(end - start)
        if index < middle:
            path.append((middle, end))
            end = middle
        else:
            path.append((start, middle))
            start = middle
    return path[::-1]


def consistency_ranges(first: int, second: int) -> list[Range]:
    """RFC 9162 2.1.4.1 PROOF(first, D[second]), as ranges. Empty when first is 0 or equal
    to second: any tree extends the empty one, and a tree is consistent with itself."""
    if not 0 <= first <= second:
        raise ValueError("first must be between 0 and second")
    if first in (0, second):
        return []
    proof = []
    start, end, whole = 0, second, True
    while first - start != end - start:
        middle = start + split_point(end - start)
        if first <= middle:
            proof.append((middle, end))
            end = middle
        else:
            proof.append((start, middle))
            start, whole = middle, False
    if not whole:
        proof.append((start, end))
    return proof[::-1]


def blocks_for(ranges: Sequence[Range]) -> set[Block]:
    return {block for start, end in ranges for block in blocks_of(start, end)}


def hashes_of(ranges: Sequence[Range], perfect: Mapping[Block, bytes]) -> list[bytes]:
    return [range_hash(start, end, perfect) for start, end in ranges]


# -- verifying ------------------------------------------------------------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.3.2: the root that ``proof`` makes of ``leaf`` at ``index``; raises
    ``ValueError`` when the proof cannot belong to a tree of ``size``."""
    if not 0 <= index < size:
        raise ValueError("the leaf index is not below the tree size")
    fn, sn, result = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise ValueError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            result = node_hash(result, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("the proof is shorter than the tree is deep")
    return result


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    try:
        return root_from_inclusion(index, size, leaf, proof) == root
    except ValueError:
        return False


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: whether the tree of ``second`` leaves extends that of ``first``."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is itself a node of the new
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    old = new = path[0]
    for sibling in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            old, new = node_hash(sibling, old), node_hash(sibling, new)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            new = node_hash(new, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and old == first_root and new == second_root


# -- building -------------------------------------------------------------------------------


def append_leaves(
    size: int, leaves: Sequence[bytes], perfect: Callable[[Block], bytes]
) -> dict[Block, bytes]:
    """The perfect subtrees that appending ``leaves`` to a tree of ``size`` completes, the
    leaves themselves included (level 0). ``perfect`` answers for those already there; only
    the blocks of ``root_blocks(size)`` are ever asked for."""
    made: dict[Block, bytes] = {}

    def known(block: Block) -> bytes:
        return made[block] if block in made else perfect(block)

    for offset, leaf in enumerate(leaves):
        index = size + offset
        made[(0, index)] = leaf
        level = 0
        while index & 1:  # a right child: its parent is complete now
            index >>= 1
            level += 1
            made[(level, index)] = node_hash(
                known((level - 1, 2 * index)), known((level - 1, 2 * index + 1))
            )
    return made
