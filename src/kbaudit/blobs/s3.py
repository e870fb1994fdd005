"""Blobs in any S3-compatible object store, through obstore (Rust's object_store).

Writes stream: obstore buffers one chunk, then switches to a multipart upload, and aborts it
when the block raises, so a failed part never leaves a blob behind. Reads go range by range.
Retries with backoff on 5xx, dropped connections and timeouts are obstore's own.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, BinaryIO, Literal, cast
from urllib.parse import urlsplit

import httpx2
import obstore
from obstore.store import S3Store

from kbaudit.errors import BlobNotFound

UPLOAD_CHUNK = 8 * 1024 * 1024
READ_RANGE = 8 * 1024 * 1024


class S3BlobStore:
    def __init__(self, url: str, endpoint: str | None = None) -> None:
        """``url`` is ``s3://bucket/prefix``; credentials come from the usual AWS variables."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"KBAUDIT_BLOB_URL: expected s3://bucket/prefix, not {url!r}")
        self.bucket = parts.netloc
        options: dict[str, Any] = {
            "client_options": {
                "allow_http": bool(endpoint and endpoint.startswith("http://")),
                "connect_timeout": timedelta(seconds=5),
                "timeout": timedelta(seconds=60),
            },
            "retry_config": {
                "max_retries": 6,
                "retry_timeout": timedelta(seconds=60),
                "backoff": {"init_backoff": timedelta(milliseconds=100)},
            },
        }
        if endpoint:
            options["endpoint"] = endpoint
        self.endpoint = endpoint or "AWS"
        self._store = S3Store(self.bucket, prefix=parts.path.strip("/") or None, **options)
        self._bucket = S3Store(self.bucket, **options)  # the bucket itself, for its requests

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        with obstore.open_writer(self._store, _checked(key), buffer_size=UPLOAD_CHUNK) as sink:
            yield cast(BinaryIO, sink)

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The blob in ranged requests of ``READ_RANGE`` bytes: a connection dropped halfway
        through a large file costs one range's retry, not the whole download again."""
        path, size = _checked(key), self.size(key)
        for start in range(0, size, READ_RANGE):
            block = memoryview(
                obstore.get_range(
                    self._store, path, start=start, length=min(READ_RANGE, size - start)
                )
            )
            for offset in range(0, len(block), chunk_size):
                yield bytes(block[offset : offset + chunk_size])

    def size(self, key: str) -> int:
        try:
            return int(obstore.head(self._store, _checked(key))["size"])
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob {key}") from exc

    def keys(self, prefix: str) -> list[str]:
        listing = obstore.list(self._store, _checked(prefix) + "/", chunk_size=1000)
        return sorted(meta["path"] for batch in listing for meta in batch)

    def delete_prefix(self, prefix: str) -> int:
        paths = self.keys(prefix)
        if paths:
            obstore.delete(self._store, paths)
        return len(paths)

    def prune(self, prefix: str, keep: Collection[str]) -> int:
        # An upload cut off mid-way is an incomplete multipart upload, which listing does not
        # show: the bucket's lifecycle rule for those removes them (docs/operations.md).
        paths = [path for path in self.keys(prefix) if path not in keep]
        if paths:
            obstore.delete(self._store, paths)
        return len(paths)

    def ping(self) -> None:
        """Reach the bucket; a missing bucket or refused credentials raise ``OSError``
        saying which."""
        try:
            obstore.list_with_delimiter(self._store, "kbaudit-ping")
        except Exception as exc:
            status, code = self._bucket_request("GET")
            where = f"bucket {self.bucket!r} at {self.endpoint}"
            if status == 404:
                raise OSError(
                    f"{where} does not exist, and kbaudit's credentials could not create it "
                    "at start; create it, or allow s3:CreateBucket"
                ) from exc
            if status in (401, 403):
                raise OSError(f"{where} refuses kbaudit's credentials ({code})") from exc
            raise OSError(f"{where} cannot be reached: {exc}") from exc

    def ensure_bucket(self) -> str | None:
        """Create the bucket when it is missing and the credentials allow it; returns what
        went wrong, if anything (the caller logs it; /readyz then says it too)."""
        status, code = self._bucket_request("GET")
        if status != 404:
            return None
        status, code = self._bucket_request("PUT")  # S3's CreateBucket
        if status == 200:
            return None
        return f"bucket {self.bucket!r} is missing and could not be created: {status} {code}"

    def _bucket_request(self, method: Literal["GET", "PUT"]) -> tuple[int, str]:
        """A request on the bucket itself, signed by obstore; (status, S3 error code)."""
        try:
            url = obstore.sign(self._bucket, method, "", timedelta(minutes=1))
            answer = httpx2.request(method, url, timeout=10)
        except Exception as exc:  # unreachable endpoint, no credentials to sign with
            return 0, type(exc).__name__
        code = re.search(r"<Code>([^<]{1,64})</Code>", answer.text)
        return answer.status_code, code[1] if code else ""


def _checked(key: str) -> str:
    # Keys are built by kbaudit, never taken from a request; still refuse anything that could
    # name another place in the bucket.
    parts = key.split("/")
    if any(not part or part in (".", "..") for part in parts):
        raise BlobNotFound("not a valid blob key")
    return key
