"""Small builders the tests share."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from kbaudit.api.app import create_app

RECORDS = "/v1/knowledge-base/audit/retrievals"


def record(**fields: Any) -> dict[str, Any]:
    """A minimal valid record as a writer would send it, with overrides."""
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "created_at": "2026-05-01T10:00:00Z",
        "retrieval_status": "hit",
        "audit_write_status": "finalized",
        "scopes": [{"knowledge_base_id": str(uuid.uuid4()), "requested": True}],
        "refs": [{"chunk_id": str(uuid.uuid4()), "rank": 1, "score": 0.9}],
    }
    body.update(fields)
    return body


def at(minutes: float) -> str:
    instant = datetime(2026, 5, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return instant.isoformat().replace("+00:00", "Z")


EXPORTS = "/v1/knowledge-base/audit/exports"
DEMO_END = datetime(2026, 5, 31, tzinfo=UTC)
DEMO_WINDOW = {"start": "2026-04-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"}


def seed_demo(api: Any, headers: dict[str, str], count: int, seed: int = 7) -> list[Any]:
    """Write ``count`` demo records through the API; returns them (msgspec structs)."""
    import msgspec

    from kbaudit.demo import demo_records

    records = list(demo_records(count, end=DEMO_END, seed=seed))
    for offset in range(0, len(records), 1000):
        items = msgspec.to_builtins(records[offset : offset + 1000])
        response = api.client.post(RECORDS, json={"items": items}, headers=headers)
        assert response.status_code == 200, response.text
    return records


def start_export(api: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = api.client.post(EXPORTS, json={**DEMO_WINDOW, **body}, headers=headers)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def view_export(api: Any, headers: dict[str, str], export_id: str) -> dict[str, Any]:
    response = api.client.get(f"{EXPORTS}/{export_id}", headers=headers)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


SIGNED_FILES = ("manifest.json", "manifest.json.sig")


def data_files(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's files without the signed manifest that follows them."""
    return [file for file in job["files"] if file["name"] not in SIGNED_FILES]


def download_all(
    api: Any, headers: dict[str, str], export_id: str, *, manifest: bool = False
) -> list[tuple[str, bytes]]:
    """Every data file of a finished export (and its manifest, if asked), checked against
    its SHA-256 (the age file's, for an export with recipients) and headers."""
    import hashlib

    job = view_export(api, headers, export_id)
    files = []
    for file in job["files"] if manifest else data_files(job):
        response = api.client.get(
            f"{EXPORTS}/{export_id}/download/{file['name']}",
            params={"token": file["download_token"]},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        sent = file.get("sha256_delivered") or file["sha256_plaintext"]
        assert hashlib.sha256(response.content).hexdigest() == sent
        assert response.headers["etag"] == f'"{sent}"'
        assert int(response.headers["content-length"]) == len(response.content)
        files.append((file["name"], response.content))
    return files


def sign_in(api: Any, key: dict[str, str]) -> TestClient:
    """A browser-like client of the console of its own, signed in with the key."""
    client = TestClient(create_app(api.container, run_workers=False), follow_redirects=False)
    response = client.post("/console/sign-in", data={"api_key": key["x-api-key"]})
    assert response.status_code == 303, response.text
    return client


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None, "the page has no CSRF token"
    return match[1]
