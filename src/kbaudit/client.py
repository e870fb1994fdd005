"""A small client of kbaudit's export API, for the ``kbaudit export`` commands and scripts."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import zstandard

AUDIT = "/v1/knowledge-base/audit"
EXPORTS = f"{AUDIT}/exports"
ENDED = ("succeeded", "partial", "failed", "expired")


class ClientError(Exception):
    """The server refused, or a downloaded file did not match its checksum."""


class ExportClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60,
        http: httpx2.Client | None = None,
    ) -> None:
        self._http = http or httpx2.Client(base_url=base_url, timeout=timeout)
        self._http.headers["x-api-key"] = api_key

    def close(self) -> None:
        self._http.close()

    def create(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json(self._http.post(EXPORTS, json=body, headers=headers))

    def get(self, export_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"{EXPORTS}/{export_id}"))

    def wait(
        self,
        export_id: str,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll_seconds: float = 1.0,
        timeout: float = 24 * 3600,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(export_id)
            if on_progress:
                on_progress(job)
            if job["status"] in ENDED:
                return job
            if time.monotonic() > deadline:
                raise ClientError(f"export {export_id} still {job['status']} after {timeout}s")
            time.sleep(poll_seconds)

    def download(
        self,
        export_id: str,
        out_dir: Path,
        on_bytes: Callable[[int], None] | None = None,
    ) -> list[Path]:
        """Every file of the export into ``out_dir``; a file is kept only when its SHA-256
        matches the job's (``sha256_delivered`` for age files). An expired token is replaced
        by viewing the job again."""
        out_dir.mkdir(parents=True, exist_ok=True)
        job = self.get(export_id)
        if job["status"] not in ("succeeded", "partial"):
            raise ClientError(f"export {export_id} is {job['status']}; nothing to download")
        saved = []
        for index in range(len(job["files"])):
            for attempt in range(3):
                file = job["files"][index]
                try:
                    saved.append(self._fetch(export_id, file, out_dir, on_bytes))
                    break
                except _TokenExpired:
                    if attempt == 2:
                        raise ClientError("download tokens keep expiring") from None
                    job = self.get(export_id)
        return saved

    def _fetch(
        self,
        export_id: str,
        file: dict[str, Any],
        out_dir: Path,
        on_bytes: Callable[[int], None] | None,
    ) -> Path:
        name = Path(file["name"]).name  # never a path the server chose
        target, partial = out_dir / name, out_dir / f".{name}.partial"
        digest = hashlib.sha256()
        url = f"{EXPORTS}/{export_id}/download/{name}"
        params, zstd = {"token": file["download_token"]}, {"Accept-Encoding": "zstd"}
        with self._http.stream("GET", url, params=params, headers=zstd) as response:
            if response.status_code == 401 and b"download_token_expired" in response.read():
                raise _TokenExpired()
            if response.status_code != 200:
                raise ClientError(f"{name}: {response.status_code} {response.read()[:300]!r}")
            with partial.open("wb") as handle:
                for chunk in _decoded(response):
                    digest.update(chunk)
                    handle.write(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
        # An export to age recipients sends age files: their hash is sha256_delivered.
        if digest.hexdigest() != (file.get("sha256_delivered") or file["sha256_plaintext"]):
            partial.unlink(missing_ok=True)
            raise ClientError(f"{name}: checksum mismatch; the file was not kept")
        partial.replace(target)
        return target

    # -- the log ----------------------------------------------------------------------------

    def signing_keys(self) -> str:
        """The signing-keys route's JSON, as text (``kbaudit.services.verify.read_keys``)."""
        return self._text(self._http.get(f"{AUDIT}/signing-keys"))

    def checkpoint(self) -> str:
        return self._text(self._http.get(f"{AUDIT}/log/checkpoint"))

    def proof(self, ref: str, tree_size: int | None = None) -> dict[str, Any]:
        params = {} if tree_size is None else {"tree_size": tree_size}
        path = f"{AUDIT}/retrievals/{quote(ref, safe='')}/proof"
        return self._json(self._http.get(path, params=params))

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        params = {"first": first, "second": second}
        return self._json(self._http.get(f"{AUDIT}/log/consistency", params=params))

    def _text(self, response: httpx2.Response) -> str:
        if response.status_code >= 400:
            raise ClientError(f"{response.status_code}: {response.text[:500]}")
        return response.text

    def _json(self, response: httpx2.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise ClientError(f"{response.status_code}: {response.text[:500]}")
        body: dict[str, Any] = response.json()
        return body


class _TokenExpired(Exception):
    pass


def _decoded(response: httpx2.Response) -> Iterator[bytes]:
    """The file, decompressed here when the server sent the zstd stream it stores: a
    fraction of the bytes on the wire, and the server's core spared the decompression."""
    if response.headers.get("content-encoding") != "zstd":
        yield from response.iter_bytes()
        return
    decompressing = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    for chunk in response.iter_raw():  # a stream cut short fails the caller's SHA-256 check
        yield decompressing.decompress(chunk)
