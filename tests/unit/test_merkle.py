"""The Merkle tree against RFC 6962's known answers and a plain statement of the RFC."""

from __future__ import annotations

import pytest

from kbaudit.crypto import merkle

# The Certificate Transparency test leaves and the root of each prefix of them.
CT_DATA = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CT_CONSISTENCY = {
    (2, 8): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


def tree_of(leaves: list[bytes]) -> dict[merkle.Block, bytes]:
    """Every perfect subtree of a tree, built by appending one leaf at a time."""
    perfect: dict[merkle.Block, bytes] = {}
    for size, leaf in enumerate(leaves):
        perfect.update(merkle.append_leaves(size, [leaf], perfect.__getitem__))
    return perfect


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, word for word."""
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = merkle.split_point(len(leaves))
    return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))


CT_LEAVES = [merkle.leaf_hash(data) for data in CT_DATA]
CT_TREE = tree_of(CT_LEAVES)
MANY = [merkle.leaf_hash(n.to_bytes(2, "big")) for n in range(70)]
MANY_TREE = tree_of(MANY)


def test_roots_match_rfc_6962_known_answers() -> None:
    for size, expected in enumerate(CT_ROOTS):
        assert merkle.range_hash(0, size, CT_TREE).hex() == expected


def test_inclusion_proofs_match_known_answers() -> None:
    for (index, size), expected in CT_INCLUSION.items():
        proof = merkle.hashes_of(merkle.inclusion_ranges(index, size), CT_TREE)
        assert [h.hex() for h in proof] == expected
        root = bytes.fromhex(CT_ROOTS[size])
        assert merkle.verify_inclusion(index, size, CT_LEAVES[index], proof, root)


def test_consistency_proofs_match_known_answers() -> None:
    for (first, second), expected in CT_CONSISTENCY.items():
        proof = merkle.hashes_of(merkle.consistency_ranges(first, second), CT_TREE)
        assert [h.hex() for h in proof] == expected
        old, new = bytes.fromhex(CT_ROOTS[first]), bytes.fromhex(CT_ROOTS[second])
        assert merkle.verify_consistency(first, second, old, new, proof)


def test_every_root_agrees_with_the_plain_recursion() -> None:
    for size in range(len(MANY) + 1):
        assert merkle.range_hash(0, size, MANY_TREE) == mth(MANY[:size])


def test_only_the_frontier_is_read_when_appending() -> None:
    perfect = dict(MANY_TREE)
    asked: list[merkle.Block] = []

    def lookup(block: merkle.Block) -> bytes:
        asked.append(block)
        return perfect[block]

    made = merkle.append_leaves(45, MANY[45:70], lookup)
    assert set(asked) <= set(merkle.root_blocks(45))
    assert {block: made[block] for block in made} == {block: MANY_TREE[block] for block in made}


def test_every_inclusion_proof_verifies_and_a_changed_one_does_not() -> None:
    for size in range(1, 40):
        root = mth(MANY[:size])
        for index in range(size):
            proof = merkle.hashes_of(merkle.inclusion_ranges(index, size), MANY_TREE)
            leaf = MANY[index]
            assert merkle.verify_inclusion(index, size, leaf, proof, root)
            assert not merkle.verify_inclusion(index, size, MANY[index + 1], proof, root)
            if size > 1:
                other = (index + 1) % size
                assert not merkle.verify_inclusion(other, size, leaf, proof, root)
                assert not merkle.verify_inclusion(
                    index, size + 1, leaf, proof, mth(MANY[: size + 1])
                )
                assert not merkle.verify_inclusion(index, size, leaf, proof[:-1], root)
                assert not merkle.verify_inclusion(index, size, leaf, [*proof, root], root)
                for position in range(len(proof)):
                    forged = list(proof)
                    forged[position] = bytes([forged[position][0] ^ 1]) + forged[position][1:]
                    assert not merkle.verify_inclusion(index, size, leaf, forged, root)


def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not() -> None:
    rewritten = [*MANY[:10], merkle.leaf_hash(b"rewritten"), *MANY[11:]]
    for second in range(1, 40):
        new_root = mth(MANY[:second])
        for first in range(second + 1):
            proof = merkle.hashes_of(merkle.consistency_ranges(first, second), MANY_TREE)
            old_root = mth(MANY[:first])
            assert merkle.verify_consistency(first, second, old_root, new_root, proof)
            if 10 < first < second:
                forged_root = mth(rewritten[:first])
                assert not merkle.verify_consistency(first, second, forged_root, new_root, proof)
            if proof:
                assert not merkle.verify_consistency(first, second, old_root, new_root, proof[1:])
                forged = [*proof[:-1], bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
                assert not merkle.verify_consistency(first, second, old_root, new_root, forged)


def test_a_shrunken_tree_is_never_consistent() -> None:
    assert not merkle.verify_consistency(8, 5, mth(MANY[:8]), mth(MANY[:5]), [])


@pytest.mark.parametrize(("index", "size"), [(-1, 4), (4, 4), (0, 0)])
def test_a_leaf_outside_the_tree_has_no_proof(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="below the tree size"):
        merkle.inclusion_ranges(index, size)
