"""Column types as the revisions up to 0012 declared them: instants as fixed-width UTC text on
SQLite and ``timestamptz`` on PostgreSQL, uuids as text and ``uuid``, JSON as text and ``jsonb``.
Only their DDL matters to a migration."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


def instant(length: int = 27) -> Any:
    return sa.String(length).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")


def uuid_text(length: int = 36) -> Any:
    return sa.String(length).with_variant(postgresql.UUID(as_uuid=False), "postgresql")


def json_object() -> Any:
    return sa.Text().with_variant(postgresql.JSONB(), "postgresql")
