"""Blobs in a dict, for service tests that need no disk: the test double shipped with the
interface. Keys and semantics are the other stores' (a blob exists once its writer closed
cleanly); nothing outlives the process."""

from __future__ import annotations

import io
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from kbaudit.errors import BlobNotFound


class MemoryBlobStore:
    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        buffer = io.BytesIO()
        yield buffer
        with self._lock:
            self._blobs[key] = buffer.getvalue()

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        content = self._get(key)
        for offset in range(0, len(content), chunk_size):
            yield content[offset : offset + chunk_size]

    def size(self, key: str) -> int:
        return len(self._get(key))

    def keys(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(key for key in self._blobs if key.startswith(prefix + "/"))

    def delete_prefix(self, prefix: str) -> int:
        return self.prune(prefix, ())

    def prune(self, prefix: str, keep: Collection[str]) -> int:
        with self._lock:
            gone = [k for k in self._blobs if k.startswith(prefix + "/") and k not in keep]
            for key in gone:
                del self._blobs[key]
        return len(gone)

    def ping(self) -> None:
        pass

    def _get(self, key: str) -> bytes:
        with self._lock:
            if key not in self._blobs:
                raise BlobNotFound(f"no blob {key}")
            return self._blobs[key]
