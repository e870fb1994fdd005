"""CSV and NDJSON renderings of exported records.

CSV follows RFC 4180 with a header and the contract's detail fields in the contract's order;
string cells a spreadsheet would run as a formula get a leading ``'``. It renders raw stored
rows in ``RECORD_FIELDS`` order. NDJSON is lossless: every field plus ``scopes`` and ``refs``,
one object a line; the store builds each object (see ``RecordRepository.export_rows``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec
import orjson

from kbaudit.domain import RECORD_FIELDS, RecordIn
from kbaudit.store.types import instant_text

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(Protocol):
    extension: str
    content_type: str
    json_lines: bool  # rows arrive as one JSON object each, built by the store

    def header(self) -> bytes: ...

    def render(self, rows: Sequence[tuple[Any, ...]]) -> bytes: ...


def _fields_of_kind(kind: type[msgspec.inspect.Type]) -> list[int]:
    """Positions of the record fields whose type (or an option of it) is of ``kind``."""
    record = msgspec.inspect.type_info(RecordIn)
    assert isinstance(record, msgspec.inspect.StructType)
    positions = []
    for index, field in enumerate(record.fields):
        kinds = field.type
        options = kinds.types if isinstance(kinds, msgspec.inspect.UnionType) else (kinds,)
        if any(isinstance(option, kind) for option in options):
            positions.append(index)
    return positions


class CsvFormat:
    """The C ``csv`` writer does the quoting; Python only touches the cells that need it:
    free-text strings starting like a formula, booleans, and instants a driver handed over as
    datetimes."""

    extension = "csv"
    content_type = "text/csv; charset=utf-8"
    json_lines = False
    _text = _fields_of_kind(msgspec.inspect.StrType)
    _flags = _fields_of_kind(msgspec.inspect.BoolType)
    _instants = _fields_of_kind(msgspec.inspect.DateTimeType)
    _maps = _fields_of_kind(msgspec.inspect.DictType)

    def header(self) -> bytes:
        return (",".join(RECORD_FIELDS) + "\r\n").encode()

    def render(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerows(map(self._cells, rows))
        return buffer.getvalue().encode()

    def _cells(self, row: tuple[Any, ...]) -> list[Any]:
        cells = list(row)
        for i in self._text:
            value = cells[i]
            if value and value.startswith(FORMULA_STARTS):
                cells[i] = "'" + value
        for i in self._flags:
            if cells[i] is not None:
                cells[i] = "true" if cells[i] else "false"
        for i in self._instants:
            if isinstance(cells[i], datetime):
                cells[i] = instant_text(cells[i])
        for i in self._maps:
            if isinstance(cells[i], dict):
                cells[i] = orjson.dumps(cells[i], option=orjson.OPT_SORT_KEYS).decode()
        return cells


class NdjsonFormat:
    extension = "ndjson"
    content_type = "application/x-ndjson"
    json_lines = True

    def header(self) -> bytes:
        return b""

    def render(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        return "".join(line + "\n" for (line,) in rows).encode()


FORMATS: dict[str, ExportFormat] = {"csv": CsvFormat(), "ndjson": NdjsonFormat()}
