"""Where export ciphertext lives: a small interface, one adapter per engine."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol


class BlobStore(Protocol):
    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A stream whose bytes become blob ``key`` only when the block exits cleanly."""
        ...

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def size(self, key: str) -> int: ...

    def keys(self, prefix: str) -> list[str]:
        """The keys of every blob under ``prefix`` (a folder: no trailing slash)."""
        ...

    def delete_prefix(self, prefix: str) -> int: ...

    def prune(self, prefix: str, keep: Collection[str]) -> int:
        """Delete every blob under ``prefix`` but those in ``keep``, unfinished uploads
        included where the store can see them; returns how many went."""
        ...

    def ping(self) -> None: ...
