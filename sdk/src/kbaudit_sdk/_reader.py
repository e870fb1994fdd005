"""Reading: every page of a query; exports from request to verified files on disk; and the
tamper-evident log's checkpoints and proofs, for a verifier to check."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2

from kbaudit_sdk._sending import AuditError

AUDIT = "/v1/knowledge-base/audit"
ENDED = ("succeeded", "partial", "failed", "expired")
DOWNLOADABLE = ("succeeded", "partial")
TOKEN_TRIES = 3  # views of the job, each minting fresh tokens, before giving up on a file
# Asked for when zstandard is installed (the ``zstd`` extra).
ZSTD = {"Accept-Encoding": "zstd"} if importlib.util.find_spec("zstandard") else {}


class IntegrityError(ValueError):
    """A downloaded file does not match its SHA-256 or the export's manifest: not kept."""


class AuditReader:
    """``with AuditReader(url, api_key) as reader:`` queries, exports and the log.

    Downloads are checked file by file against their SHA-256, and the data files against
    the export's manifest; an interrupted download resumes where it stopped. With
    ``zstandard`` installed (the ``zstd`` extra), files cross the wire compressed."""

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

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- records -----------------------------------------------------------------------------

    def records(self, start: str, end: str, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every record of the window and filters (``statuses``, ``kb_ids``,
        ``actor_user_id``, ``session_id``), newest first, page after page."""
        params: dict[str, Any] = {"start": start, "end": end, "limit": 200, **filters}
        while True:
            page = self._json(self._http.get(f"{AUDIT}/retrievals", params=params))
            yield from page["items"]
            if not page["has_more"]:
                return
            params["cursor"] = page["next_cursor"]

    def record(self, ref: str) -> dict[str, Any]:
        return self._json(self._http.get(f"{AUDIT}/retrievals/{quote(ref, safe='')}"))

    # -- exports -----------------------------------------------------------------------------

    def export(
        self,
        start: str,
        end: str,
        export_format: str = "ndjson",
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> str:
        """Request an export (``fields``: filters, ``recipients``, ``destination``); returns
        its id. The same ``idempotency_key`` and request within a day return the same id."""
        body = {"start": start, "end": end, "export_format": export_format, **fields}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer = self._http.post(f"{AUDIT}/exports", json=body, headers=headers)
        return str(self._json(answer)["id"])

    def job(self, export_id: str) -> dict[str, Any]:
        """The export as it stands, with fresh download tokens once it has files."""
        return self._json(self._http.get(f"{AUDIT}/exports/{export_id}"))

    def wait(
        self,
        export_id: str,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 1.0,
        timeout: float = 24 * 3600,
    ) -> dict[str, Any]:
        """The job once it has ended; ``TimeoutError`` if it has not within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(export_id)
            if on_progress:
                on_progress(job)
            if job["status"] in ENDED:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"export {export_id} still {job['status']} after {timeout} s")
            time.sleep(poll)

    def download(
        self,
        export_id: str,
        folder: Path,
        on_bytes: Callable[[int], None] | None = None,
    ) -> list[Path]:
        """Every file into ``folder``, each checked against its SHA-256, and the data files
        also against the export's manifest. (``kbaudit verify`` checks its signature.) A
        file is written to ``.NAME.partial`` first: a download cut short resumes from there
        next time. An expired token is replaced by viewing the job again."""
        folder.mkdir(parents=True, exist_ok=True)
        job = self.job(export_id)
        if job["status"] not in DOWNLOADABLE:
            raise AuditError(409, {"error": "not_downloadable", "message": job["status"]})
        saved = []
        for index in range(len(job["files"])):
            for attempt in range(TOKEN_TRIES):
                try:
                    saved.append(self._fetch(export_id, job["files"][index], folder, on_bytes))
                    break
                except _TokenExpired:
                    if attempt + 1 == TOKEN_TRIES:
                        raise AuditError(401, {"error": "download_token_expired"}) from None
                    job = self.job(export_id)
        _check_manifest(folder, saved)
        return saved

    def _fetch(
        self,
        export_id: str,
        file: dict[str, Any],
        folder: Path,
        on_bytes: Callable[[int], None] | None,
    ) -> Path:
        name = Path(file["name"]).name  # never a path the server chose
        target, partial = folder / name, folder / f".{name}.partial"
        expected = _sent(file)
        url = f"{AUDIT}/exports/{export_id}/download/{quote(name)}"
        have = partial.stat().st_size if partial.exists() else 0
        # A resumed file comes as it is, a range of it; a whole one compressed, where this
        # process can decompress it (and the server's core is spared the decompression).
        headers = {"Range": f"bytes={have}-", "If-Range": f'"{expected}"'} if have else ZSTD
        params = {"token": file["download_token"]}
        with self._http.stream("GET", url, params=params, headers=headers) as answer:
            if answer.status_code == 416:  # the partial file is whole already, or longer
                partial.unlink()
                return self._fetch(export_id, file, folder, on_bytes)
            if answer.status_code not in (200, 206):
                answer.read()
                if answer.status_code == 401 and b"download_token_expired" in answer.content:
                    raise _TokenExpired()
                raise _refused(answer)
            resumed = answer.status_code == 206
            with partial.open("ab" if resumed else "wb") as handle:
                for chunk in _decoded(answer):
                    handle.write(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
        if _sha256(partial) != expected:
            partial.unlink()
            raise IntegrityError(f"{name} does not match its SHA-256; it was not kept")
        partial.replace(target)
        return target

    # -- the log -----------------------------------------------------------------------------

    def signing_keys(self) -> str:
        """The signing-keys route's JSON, as text."""
        return self._text(self._http.get(f"{AUDIT}/signing-keys"))

    def checkpoint(self) -> str:
        """The organization's current checkpoint: a signed note."""
        return self._text(self._http.get(f"{AUDIT}/log/checkpoint"))

    def proof(self, ref: str, tree_size: int | None = None) -> dict[str, Any]:
        """Inclusion proofs of every write of a record, in the tree of ``tree_size``."""
        params = {} if tree_size is None else {"tree_size": tree_size}
        path = f"{AUDIT}/retrievals/{quote(ref, safe='')}/proof"
        return self._json(self._http.get(path, params=params))

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        """The proof that the tree of ``second`` leaves extends the tree of ``first``."""
        params = {"first": first, "second": second}
        return self._json(self._http.get(f"{AUDIT}/log/consistency", params=params))

    def _text(self, response: httpx2.Response) -> str:
        if response.status_code >= 400:
            raise _refused(response)
        return response.text

    def _json(self, response: httpx2.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise _refused(response)
        body: dict[str, Any] = response.json()
        return body


class _TokenExpired(Exception):
    pass


def _decoded(answer: httpx2.Response) -> Iterator[bytes]:
    """The file's bytes. A zstd-coded one is decompressed here (httpx2 has no zstd decoder),
    across the many frames of the stream kbaudit stores. A stream cut short fails the
    caller's SHA-256 check."""
    if answer.headers.get("content-encoding") != "zstd":
        yield from answer.iter_bytes()
        return
    import zstandard  # asked for only when installed (ZSTD)

    decompressing = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    for chunk in answer.iter_raw():
        yield decompressing.decompress(chunk)


def _check_manifest(folder: Path, saved: list[Path]) -> None:
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return
    listed = {f["name"]: _sent(f) for f in json.loads(manifest.read_bytes())["files"]}
    for path in saved:
        if path.name in listed and _sha256(path) != listed[path.name]:
            path.unlink()
            raise IntegrityError(f"{path.name} does not match the manifest; it was not kept")


def _refused(response: httpx2.Response) -> AuditError:
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:300]}
    return AuditError(response.status_code, body if isinstance(body, dict) else {})


def _sent(file: dict[str, Any]) -> str:
    """The SHA-256 of the bytes sent: an age file's, for exports to recipients."""
    return str(file.get("sha256_delivered") or file["sha256_plaintext"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
