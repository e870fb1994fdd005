"""Reading: every page of a query, and exports from request to verified files on disk."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from kbaudit_sdk._sending import AuditError

AUDIT = "/v1/knowledge-base/audit"
ENDED = ("succeeded", "partial", "failed", "expired")


class AuditReader:
    def __init__(self, base_url: str, api_key: str, *, http: httpx.Client | None = None) -> None:
        self._http = http or httpx.Client(base_url=base_url, timeout=60)
        self._http.headers["x-api-key"] = api_key

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

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
        return self._json(self._http.get(f"{AUDIT}/retrievals/{ref}"))

    def export(self, start: str, end: str, export_format: str = "ndjson", **filters: Any) -> str:
        """Request an export; returns its id."""
        body = {"start": start, "end": end, "export_format": export_format, **filters}
        return str(self._json(self._http.post(f"{AUDIT}/exports", json=body))["id"])

    def wait(
        self,
        export_id: str,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 1.0,
    ) -> dict[str, Any]:
        while True:
            job = self._json(self._http.get(f"{AUDIT}/exports/{export_id}"))
            if on_progress:
                on_progress(job)
            if job["status"] in ENDED:
                return job
            time.sleep(poll)

    def download(self, export_id: str, folder: Path) -> list[Path]:
        """Every file into ``folder``, each checked against its SHA-256, and the data files
        also against the export's manifest. (``kbaudit verify`` checks the signature.)"""
        folder.mkdir(parents=True, exist_ok=True)
        job = self._json(self._http.get(f"{AUDIT}/exports/{export_id}"))
        saved = [self._fetch(export_id, file, folder) for file in job["files"]]
        manifest = folder / "manifest.json"
        if manifest.exists():
            listed = {f["name"]: _sent(f) for f in json.loads(manifest.read_bytes())["files"]}
            for path in saved:
                if path.name in listed and _sha256(path) != listed[path.name]:
                    raise ValueError(f"{path.name} does not match the manifest")
        return saved

    def _fetch(self, export_id: str, file: dict[str, Any], folder: Path) -> Path:
        name = Path(file["name"]).name  # never a path the server chose
        target = folder / name
        url = f"{AUDIT}/exports/{export_id}/download/{name}"
        with self._http.stream("GET", url, params={"token": file["download_token"]}) as answer:
            if answer.status_code != 200:
                answer.read()
                raise _refused(answer)
            with target.open("wb") as handle:
                for chunk in answer.iter_bytes():
                    handle.write(chunk)
        if _sha256(target) != _sent(file):
            target.unlink()
            raise ValueError(f"{name} does not match its SHA-256; it was not kept")
        return target

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise _refused(response)
        body: dict[str, Any] = response.json()
        return body


def _refused(response: httpx.Response) -> AuditError:
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
