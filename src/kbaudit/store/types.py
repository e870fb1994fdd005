"""Column types whose storage differs by engine, so that services never see the difference.

SQLite compares text, so instants are stored there in one fixed-width UTC format
(``2026-01-02T03:04:05.000006Z``) whose string order is time order; PostgreSQL gets native
``timestamptz`` and ``uuid`` columns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import String, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from kbaudit.document import instant_text


class Instant(TypeDecorator[datetime]):
    impl = String(27)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        return dialect.type_descriptor(String(27))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return instant_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value)


class UuidText(TypeDecorator[str]):
    """A uuid held as its canonical lowercase text in Python."""

    impl = String(36)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=False))
        return dialect.type_descriptor(String(36))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)


class JsonObject(TypeDecorator[dict[str, Any]]):
    """A JSON object (or list: the events of a webhook, the recipients of an export)."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql" or isinstance(value, str):
            return value
        return orjson.dumps(value).decode()

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, Any] | None:
        if not isinstance(value, str | bytes):  # None, or PostgreSQL's own decoding
            return value  # type: ignore[no-any-return]
        loaded: dict[str, Any] = orjson.loads(value)
        return loaded
