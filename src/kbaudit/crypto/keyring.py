"""The master keyring: versioned root keys from which kbaudit derives every server secret.

On first run a version-1 key is generated into ``DATA_DIR/master.keys`` (mode 0600);
``kbaudit keys rotate-master`` appends a new version, which becomes current. Old versions
stay, so that what they protected still opens. Several hosts share a keyring through
``KBAUDIT_MASTER_KEY``: ``base64`` (version 1) or ``2:base64,1:base64``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_BYTES = 32
KEYRING_FILE = "master.keys"


class Keyring:
    """Holds the key versions; its repr never shows them."""

    __slots__ = ("_versions",)

    def __init__(self, versions: dict[int, bytes]) -> None:
        if not versions:
            raise ValueError("a keyring needs at least one key")
        for version, material in versions.items():
            if version < 1 or len(material) < KEY_BYTES:
                raise ValueError(f"master key version {version} is invalid or too short")
        self._versions = dict(versions)

    def __repr__(self) -> str:
        return f"Keyring(versions={sorted(self._versions)})"

    @classmethod
    def ephemeral(cls) -> Keyring:
        """One random key, held in memory only: for service tests, whose sealed data need
        not outlive the process."""
        return cls({1: secrets.token_bytes(KEY_BYTES)})

    @property
    def current(self) -> int:
        return max(self._versions)

    @property
    def versions(self) -> list[int]:
        return sorted(self._versions)

    def derive(self, purpose: str, version: int | None = None) -> bytes:
        """A 256-bit key for one purpose; the master keys are uniformly random, so HMAC-SHA256
        is a sound KDF. An unknown version raises ``KeyError``."""
        material = self._versions[self.current if version is None else version]
        return hmac.new(material, b"kbaudit/" + purpose.encode(), hashlib.sha256).digest()


def load_keyring(data_dir: Path, configured: str | None) -> Keyring:
    """The keyring of KBAUDIT_MASTER_KEY, else of the data folder's file (made at first run).
    Raises ``ValueError`` saying which source is wrong and how."""
    if configured:
        return Keyring(_parse(configured, "KBAUDIT_MASTER_KEY"))
    path = data_dir / KEYRING_FILE
    if not path.exists():
        _append(path, 1)
    return Keyring(_parse(path.read_text().strip().replace("\n", ","), str(path)))


def rotate(data_dir: Path) -> int:
    """Add a new current version to the keyring file; returns its number."""
    path = data_dir / KEYRING_FILE
    keyring = load_keyring(data_dir, None)
    version = keyring.current + 1
    _append(path, version)
    return version


def _parse(text: str, source: str) -> dict[int, bytes]:
    versions: dict[int, bytes] = {}
    try:
        for entry in filter(None, (part.strip() for part in text.split(","))):
            number, _, encoded = entry.rpartition(":")
            version = int(number or 1)
            if version in versions:
                raise ValueError(f"{source}: master key version {version} is given twice")
            versions[version] = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(_FORMAT.format(source=source)) from exc
    except ValueError as exc:
        raise ValueError(
            str(exc) if "twice" in str(exc) else _FORMAT.format(source=source)
        ) from exc
    if not versions:
        raise ValueError(_FORMAT.format(source=source))
    for version, material in versions.items():
        if version < 1 or len(material) < KEY_BYTES:
            raise ValueError(f"{source}: master key version {version} is invalid or too short")
    return versions


_FORMAT = (
    "{source} must hold base64 of 32+ bytes, or VERSION:BASE64 entries separated by commas "
    "(or one a line in the file)"
)


def _append(path: Path, version: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"{version}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_EXCL if version == 1 else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return  # another process created version 1 first; use theirs
    with os.fdopen(fd, "a") as handle:
        handle.write(line)
