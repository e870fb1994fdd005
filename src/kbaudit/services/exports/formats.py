"""CSV and NDJSON renderings of exported records (Parquet: ``parquet.py``).

CSV follows RFC 4180 with a header and the contract's detail fields in the contract's order;
string cells a spreadsheet would run as a formula get a leading ``'``. It renders the stored
documents (``kbaudit.document``) in ``RECORD_FIELDS`` order. NDJSON is lossless: the canonical
documents themselves, every field plus ``scopes`` and ``refs``, one a line.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from kbaudit.domain import RECORD_FIELDS

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Rendering(Protocol):
    """One file being rendered: its first bytes, then bytes for each batch of canonical
    record documents (``kbaudit.document``), then its last bytes."""

    def start(self) -> bytes: ...

    def render(self, documents: Sequence[bytes]) -> bytes: ...

    def finish(self) -> bytes: ...


class ExportFormat(Protocol):
    extension: str
    content_type: str

    def rendering(self) -> Rendering: ...


_NEEDS_QUOTES = re.compile(r'[",\r\n]')
_SEPARATORS = len(RECORD_FIELDS) - 1
_MAP = "\0"  # stands in for a JSON map while the line is checked: NUL is refused at ingest
_record_values = operator.itemgetter(*RECORD_FIELDS)
_MAP_FIELDS = [name for name in RECORD_FIELDS if name == "ineligible_counts_by_reason"]
_FLOAT_FIELDS = [name for name in RECORD_FIELDS if name == "alpha"]
_DEFUSED = [("," + start, ",'" + start) for start in FORMULA_STARTS if start not in "\t\r"]


def _csv_line(document: dict[str, Any]) -> str:
    """Nearly every record's cells need no quotes: they are joined as they are, and a few
    substring tests of the line prove it. Then a comma in the line is always a separator,
    so ``,=`` always starts a cell and takes its ``'`` by a replace. Otherwise (a quote, line
    break or tab, a comma in a cell, a negative number) each cell is looked at on its own.
    Comprehensions and substring tests, not a call per cell nor a regular expression: this
    runs for 45 cells a record."""
    values = _record_values(document)
    line = ",".join(
        [
            ""
            if v is None
            else v
            if v.__class__ is str
            else str(v)
            if v.__class__ is int
            else _cell(v, _MAP)
            for v in values
        ]
    )
    if (
        line.count(",") != _SEPARATORS
        or '"' in line
        or "\n" in line
        or "\r" in line
        or "\t" in line
        or _negative_number(document)
    ):
        return _careful_line(values)
    if line.startswith(FORMULA_STARTS):
        line = "'" + line
    for start, defused in _DEFUSED:
        if start in line:
            line = line.replace(start, defused)
    if _MAP in line:
        for name in _MAP_FIELDS:
            if document[name] is not None:
                line = line.replace(_MAP, _cell(document[name], None), 1)
    return line + "\r\n"


def _negative_number(document: dict[str, Any]) -> bool:
    for name in _FLOAT_FIELDS:
        value = document[name]
        if value is not None and value < 0:
            return True
    return False


def _careful_line(values: tuple[Any, ...]) -> str:
    cells = [
        "" if v is None else _text_cell(v) if v.__class__ is str else _cell(v, None) for v in values
    ]
    return ",".join(cells) + "\r\n"


def _text_cell(value: str) -> str:
    """RFC 4180 quoting where needed, after a ``'`` for what a spreadsheet would run."""
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    if _NEEDS_QUOTES.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def _cell(value: bool | float | dict[str, Any], map_stand_in: str | None) -> str:
    if value.__class__ is bool:
        return "true" if value else "false"
    if isinstance(value, dict):
        if map_stand_in is not None:
            return map_stand_in
        return _text_cell(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())
    return str(value)


class CsvFormat:
    """A rendering of its own: a line depends on its record alone."""

    extension = "csv"
    content_type = "text/csv; charset=utf-8"

    def rendering(self) -> CsvFormat:
        return self

    def start(self) -> bytes:
        return (",".join(RECORD_FIELDS) + "\r\n").encode()

    def render(self, documents: Sequence[bytes]) -> bytes:
        return "".join(map(_csv_line, map(orjson.loads, documents))).encode()

    def finish(self) -> bytes:
        return b""


class NdjsonFormat:
    """The documents as they are: canonical JSON, one a line."""

    extension = "ndjson"
    content_type = "application/x-ndjson"

    def rendering(self) -> NdjsonFormat:
        return self

    def start(self) -> bytes:
        return b""

    def render(self, documents: Sequence[bytes]) -> bytes:
        if not documents:
            return b""
        return b"\n".join(documents) + b"\n"

    def finish(self) -> bytes:
        return b""


class ParquetFormat:
    """Written by ``parquet.py``, imported only when a Parquet file is written: pyarrow
    takes 0.37 s to import, which every API and CLI start would otherwise pay."""

    extension = "parquet"
    content_type = "application/vnd.apache.parquet"

    def rendering(self) -> Rendering:
        from kbaudit.services.exports.parquet import ParquetRendering

        return ParquetRendering()


FORMATS: dict[str, ExportFormat] = {
    "csv": CsvFormat(),
    "ndjson": NdjsonFormat(),
    "parquet": ParquetFormat(),
}
