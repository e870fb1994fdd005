"""How SQLite keeps the columns it has no type for. It compares text, so an instant is kept in
one fixed-width UTC form (``2026-01-02T03:04:05.000006Z``) whose string order is time order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from kbaudit.document import instant_text


class InstantText(TypeDecorator[datetime]):
    impl = String(27)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else instant_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


class JsonText(TypeDecorator[dict[str, Any]]):
    """A JSON object (or list: the events of a webhook, the recipients of an export)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or isinstance(value, str):
            return value
        return orjson.dumps(value).decode()

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, Any] | None:
        if value is None:
            return None
        loaded: dict[str, Any] = orjson.loads(value)
        return loaded
