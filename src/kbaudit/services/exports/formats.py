"""CSV and NDJSON renderings of exported records.

Both take batches of raw stored rows in ``RECORD_FIELDS`` order. CSV follows RFC 4180 with a
header and the contract's detail fields in that order; string cells a spreadsheet would run
as a formula are prefixed with ``'``. NDJSON is lossless: every field plus ``scopes`` and
``refs``, one object a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import orjson

from kbaudit.domain import RECORD_FIELDS, REF_FIELDS, SCOPE_FIELDS
from kbaudit.store.types import instant_text

Children = tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[Any, ...]]]]
_ID = RECORD_FIELDS.index("id")
_MAP_FIELDS = frozenset({"ineligible_counts_by_reason", "effective_serving_status_counts"})
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(Protocol):
    extension: str
    content_type: str
    needs_children: bool

    def header(self) -> bytes: ...

    def render(self, rows: Sequence[tuple[Any, ...]], children: Children | None) -> bytes: ...


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        text = instant_text(value)
    elif isinstance(value, dict):
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    else:
        text = str(value)
    if text.startswith(FORMULA_STARTS):
        text = "'" + text
    if '"' in text or "," in text or "\n" in text or "\r" in text:
        text = '"' + text.replace('"', '""') + '"'
    return text


class CsvFormat:
    extension = "csv"
    content_type = "text/csv; charset=utf-8"
    needs_children = False

    def header(self) -> bytes:
        return (",".join(RECORD_FIELDS) + "\r\n").encode()

    def render(self, rows: Sequence[tuple[Any, ...]], children: Children | None) -> bytes:
        lines = [",".join(map(csv_cell, row)) for row in rows]
        return ("\r\n".join(lines) + "\r\n").encode() if lines else b""


def _json_value(name: str, value: Any) -> Any:
    if name in _MAP_FIELDS and isinstance(value, str):
        return orjson.Fragment(value)  # stored as compact JSON already
    return value


def _objects(fields: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [
        {name: _json_value(name, value) for name, value in zip(fields, row, strict=True)}
        for row in rows
    ]


class NdjsonFormat:
    extension = "ndjson"
    content_type = "application/x-ndjson"
    needs_children = True

    def header(self) -> bytes:
        return b""

    def render(self, rows: Sequence[tuple[Any, ...]], children: Children | None) -> bytes:
        scopes, refs = children or ({}, {})
        out = bytearray()
        for row in rows:
            record = {
                name: _json_value(name, value)
                for name, value in zip(RECORD_FIELDS, row, strict=True)
            }
            record["scopes"] = _objects(SCOPE_FIELDS, scopes.get(row[_ID], ()))
            record["refs"] = _objects(REF_FIELDS, refs.get(row[_ID], ()))
            out += orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        return bytes(out)


FORMATS: dict[str, ExportFormat] = {"csv": CsvFormat(), "ndjson": NdjsonFormat()}
