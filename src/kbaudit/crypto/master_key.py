"""The local master key: the root from which kbaudit derives its server secrets.

It is generated into the data folder (mode 0600) on first run, or given as base64 in
``KBAUDIT_MASTER_KEY`` so that several hosts share it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

MASTER_KEY_BYTES = 32


class MasterKey:
    """Holds the key bytes; its repr never shows them."""

    __slots__ = ("_material",)

    def __init__(self, material: bytes) -> None:
        if len(material) < MASTER_KEY_BYTES:
            raise ValueError(f"a master key needs at least {MASTER_KEY_BYTES} bytes")
        self._material = material

    def __repr__(self) -> str:
        return "MasterKey(***)"

    def derive(self, purpose: str) -> bytes:
        """A key for one purpose. The master key is uniformly random, so HMAC is a sound KDF."""
        return hmac.new(self._material, b"kbaudit/" + purpose.encode(), hashlib.sha256).digest()


def load_master_key(data_dir: Path, configured: str | None) -> MasterKey:
    if configured:
        try:
            return MasterKey(base64.b64decode(configured, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ValueError(
                f"KBAUDIT_MASTER_KEY must be base64 of at least {MASTER_KEY_BYTES} bytes"
            ) from exc
    path = data_dir / "master.key"
    if not path.exists():
        _create_key_file(path)
    return MasterKey(base64.b64decode(path.read_bytes().strip()))


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first; use theirs
    with os.fdopen(fd, "wb") as handle:
        handle.write(encoded + b"\n")
