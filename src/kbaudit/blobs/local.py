"""Blobs as files under one folder. Keys are built by kbaudit, never taken from a request,
but every key is still checked to stay inside the folder."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from kbaudit.errors import BlobNotFound

_SAFE_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f".{final.name}.{uuid.uuid4().hex}.partial")
        try:
            with partial.open("wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob {key}") from exc
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob {key}") from exc

    def keys(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and not path.name.endswith(".partial")
        )

    def delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix)
        if not folder.exists():
            return 0
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder)
        return count

    def prune(self, prefix: str, keep: Collection[str]) -> int:
        folder = self._path(prefix)
        if not folder.exists():
            return 0
        pruned = 0
        for path in folder.rglob("*"):
            if path.is_file() and path.relative_to(self.root).as_posix() not in keep:
                path.unlink(missing_ok=True)
                pruned += 1
        return pruned

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"blob folder {self.root} is not writable")

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not parts or any(not p or p in (".", "..") or set(p) - _SAFE_PART for p in parts):
            raise BlobNotFound("not a valid blob key")
        path = self.root.joinpath(*parts)
        if self.root not in path.parents:
            raise BlobNotFound("not a valid blob key")
        return path
