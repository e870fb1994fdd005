"""Small builders the tests share."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

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
