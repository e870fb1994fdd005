"""C2SP tlog-checkpoint: the signed statement of one organization's log at one size."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from kbaudit.crypto.signing import PublicKey, SignatureError, open_note

ORIGIN_PREFIX = "kbaudit/"


def origin_of(org_uuid: str) -> str:
    return f"{ORIGIN_PREFIX}{org_uuid}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise SignatureError("a checkpoint has an origin, a size and a root hash")
        origin, size, root = lines[0], lines[1], lines[2]
        canonical = size.isascii() and size.isdigit() and not (size.startswith("0") and size != "0")
        if not origin or not canonical:
            raise SignatureError("the checkpoint's origin or tree size is malformed")
        try:
            digest = base64.b64decode(root, validate=True)
        except binascii.Error as exc:
            raise SignatureError("the checkpoint's root hash is not base64") from exc
        if len(digest) != 32:
            raise SignatureError("the checkpoint's root hash is not 32 bytes")
        return cls(origin, int(size), digest)


def open_checkpoint(note: str, keys: list[PublicKey]) -> tuple[Checkpoint, PublicKey]:
    """The checkpoint a signed note states, once a signature by one of ``keys`` verifies."""
    text, key = open_note(note, keys)
    return Checkpoint.parse(text), key
