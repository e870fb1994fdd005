"""Statistics on SQLite: the document's fields through its JSON functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, cast, func, true
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from kbaudit.store.stats import StatsRepository
from kbaudit.store.tables import records


class SqliteStats(StatsRepository):
    def _document_fields(
        self, names: Sequence[str]
    ) -> tuple[FromClause, dict[str, ColumnElement[Any]]]:
        return records, {name: self._field(name) for name in names}

    def _document_scopes(self) -> tuple[FromClause, ColumnElement[Any], ColumnElement[Any]]:
        scopes = func.json_each(records.c.document, "$.scopes").table_valued("value").alias()
        kb = cast(func.json_extract(scopes.c.value, "$.knowledge_base_id"), String)
        return records.join(scopes, true()), self._field("duration_ms"), kb

    def _field(self, name: str) -> ColumnElement[Any]:
        return cast(func.json_extract(records.c.document, f"$.{name}"), String)
