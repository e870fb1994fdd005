"""Ed25519 signing keys, and the C2SP signed notes that checkpoints are written as.

The keys come from the master keyring: version N of the keyring gives signing key N, so that
every host that shares ``KBAUDIT_MASTER_KEY`` signs with the same key, rotating the keyring
rotates the signing key, and old versions stay listed (retired) to verify what they signed.

A key is known by its C2SP signed-note key ID, SHA-256(name || "\\n" || 0x01 || public
key)[:4], written in hex: the ``kid`` of the signing-keys route, of ``manifest.json.sig``
and of every note signature line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kbaudit.crypto.keyring import Keyring

KEY_NAME = "kbaudit"
ED25519 = b"\x01"  # the signed-note signature type
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space open every signature line


class SignatureError(ValueError):
    """A signature, key or note that does not check out; the message says which."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    name: str
    raw: bytes

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(self.name.encode() + b"\n" + ED25519 + self.raw).digest()[:4]

    @property
    def kid(self) -> str:
        return self.key_id.hex()

    @property
    def vkey(self) -> str:
        """The signed-note verifier key: name+hex key id+base64(type || key)."""
        return f"{self.name}+{self.kid}+{base64.b64encode(ED25519 + self.raw).decode()}"

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    @classmethod
    def from_vkey(cls, vkey: str) -> PublicKey:
        name, _, rest = vkey.strip().partition("+")
        kid, _, encoded = rest.partition("+")
        try:
            typed = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise SignatureError(f"verifier key {vkey[:40]!r} is not base64") from exc
        if not name or typed[:1] != ED25519 or len(typed) != 33:
            raise SignatureError(f"verifier key {vkey[:40]!r} is not an Ed25519 key")
        key = cls(name, typed[1:])
        if key.kid != kid.lower():
            raise SignatureError(f"verifier key {vkey[:40]!r} has a key id that does not match")
        return key


class SigningKeys:
    """One Ed25519 key per master keyring version; the newest signs. Holds private keys:
    its repr shows only the key ids."""

    def __init__(self, keyring: Keyring, name: str = KEY_NAME) -> None:
        self._private = {
            version: Ed25519PrivateKey.from_private_bytes(
                keyring.derive("signing/ed25519", version)
            )
            for version in keyring.versions
        }
        self._public = {
            version: PublicKey(name, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
            for version, key in self._private.items()
        }
        self._active = keyring.current

    def __repr__(self) -> str:
        return f"SigningKeys(active={self.active.kid})"

    @property
    def active(self) -> PublicKey:
        return self._public[self._active]

    def listed(self) -> list[tuple[PublicKey, str]]:
        """Every key with its status, the active one first."""
        ordered = sorted(self._public, reverse=True)
        return [(self._public[v], "active" if v == self._active else "retired") for v in ordered]

    def sign(self, message: bytes) -> bytes:
        return self._private[self._active].sign(message)

    def sign_note(self, text: str) -> str:
        """``text`` as a signed note, signed by the active key."""
        if not text.endswith("\n") or "\n\n" in text:
            raise ValueError("a note's text ends with one newline and has no blank line")
        key = self.active
        signature = base64.b64encode(key.key_id + self.sign(text.encode())).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{key.name} {signature}\n"


def open_note(note: str, keys: list[PublicKey]) -> tuple[str, PublicKey]:
    """The text of a signed note and the key that signed it, of ``keys``. Raises
    ``SignatureError`` unless a signature line by one of them verifies; a line by a known
    key that does not verify rejects the note."""
    text, separator, signatures = note.rpartition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise SignatureError("the note has no signature lines")
    text += "\n"
    by_id = {(key.name, key.key_id): key for key in keys}
    for line in signatures[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise SignatureError("the note has a malformed signature line")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise SignatureError("the note has a signature that is not base64") from exc
        key = by_id.get((name, raw[:4]))
        if key is None:
            continue
        if not key.verifies(raw[4:], text.encode()):
            raise SignatureError(f"the note's signature by key {key.kid} does not verify")
        return text, key
    raise SignatureError("the note is not signed by any of the given keys")
