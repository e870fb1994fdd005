"""PostgreSQL's own types for what SQLite keeps as text: the driver converts them."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql

INSTANT = postgresql.TIMESTAMP(timezone=True)
UUID_TEXT = postgresql.UUID(as_uuid=False)  # read back as the canonical text
JSON_OBJECT = postgresql.JSONB()
