"""CSV and NDJSON renderings of exported records (Parquet: ``parquet.py``).

CSV follows RFC 4180 with a header and the contract's detail fields in the contract's order;
string cells a spreadsheet would run as a formula get a leading ``'``. It renders the stored
documents (``kbaudit.document``) in ``RECORD_FIELDS`` order. NDJSON is lossless: the canonical
documents themselves, every field plus ``scopes`` and ``refs``, one a line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import msgspec

from kbaudit.document import fields_of_kind
from kbaudit.domain import RECORD_FIELDS, ExportFormat, RecordIn

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Rendering(Protocol):
    """One file being rendered: its first bytes, then bytes for each batch of canonical
    record documents (``kbaudit.document``; UTF-8, each ending in a newline), then its last
    bytes."""

    def start(self) -> bytes: ...

    def render(self, lines: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class FileFormat(Protocol):
    extension: str
    content_type: str

    def rendering(self) -> Rendering: ...


_NEEDS_QUOTES = re.compile(r'[",\r\n]')
_SEPARATORS = len(RECORD_FIELDS) - 1
_MAP = "\0"  # stands in for a JSON map while the line is checked: NUL is refused at ingest
_ABSENT = (None, msgspec.Raw(b"null"))  # a map's field missing, or null
_BOOL_FIELDS = fields_of_kind(RecordIn, msgspec.inspect.BoolType)
_INT_FIELDS = fields_of_kind(RecordIn, msgspec.inspect.IntType)
_MAP_FIELDS = fields_of_kind(RecordIn, msgspec.inspect.DictType)
_FLOAT_FIELDS = fields_of_kind(RecordIn, msgspec.inspect.FloatType)
# A comma before a formula's first character: the cell after it takes a ``'``. (Tabs and
# carriage returns send a line down the careful path.) One regular expression, not a
# substring test per character: 0.6 against 2.7 µs a line.
_FORMULA_CELL = re.compile(
    ",(?=[" + re.escape("".join(c for c in FORMULA_STARTS if c not in "\t\r")) + "])"
)


def _cell_type(name: str) -> Any:
    if name in _BOOL_FIELDS:
        return bool | None
    if name in _INT_FIELDS:
        return int | None
    if name in _MAP_FIELDS:
        return msgspec.Raw  # canonical JSON already; msgspec takes no union of Raw
    if name in _FLOAT_FIELDS:
        return Any  # as stored: RFC 8785 writes 1.0 as 1, and the cell shows what was stored
    return str | None


# A document's CSV fields: decoding into it skips scopes and refs (two thirds of a
# document) without building them.
_CsvFields = msgspec.defstruct(
    "CsvFields", [(name, _cell_type(name), None) for name in RECORD_FIELDS]
)
_read_fields = msgspec.json.Decoder(_CsvFields)


def _line_function() -> Callable[[Any], str]:
    """One f-string over every field, generated from the field list: each cell as it comes
    when no cell needs quotes (``_csv_line`` then checks that none did), a map as ``_MAP``.
    Half the time of joining a list of cells, with one test of each value's type."""
    cells = []
    for name in RECORD_FIELDS:
        value = f"r.{name}"
        absent = f"{value} in ABSENT" if name in _MAP_FIELDS else f"{value} is None"
        shown = "MAP" if name in _MAP_FIELDS else value
        if name in _BOOL_FIELDS:
            shown = f"'true' if {value} else 'false'"
        cells.append(f"{{'' if {absent} else {shown}}}")
    source = f'def line(r):\n    return f"{",".join(cells)}"\n'
    namespace: dict[str, Any] = {"MAP": _MAP, "ABSENT": _ABSENT}
    exec(source, namespace)  # noqa: S102 - the source is made of the field names alone
    function: Callable[[Any], str] = namespace["line"]
    return function


_plain_line = _line_function()


def _csv_line(fields: Any) -> str:
    """Nearly every record's cells need no quotes: they are written as they are, and a few
    substring tests of the line prove it. Then a comma in the line is always a separator,
    so ``,=`` always starts a cell and takes its ``'`` by one substitution over the line.
    Otherwise (a quote, line break or tab, a comma in a cell, a negative number) each cell
    is looked at on its own. Tests of the whole line, not a call per cell: this runs for 45
    cells a record."""
    line = _plain_line(fields)
    if (
        line.count(",") != _SEPARATORS
        or '"' in line
        or "\n" in line
        or "\r" in line
        or "\t" in line
        or _negative_number(fields)
    ):
        return _careful_line(msgspec.structs.astuple(fields))
    if line.startswith(FORMULA_STARTS):
        line = "'" + line
    if _FORMULA_CELL.search(line):
        line = _FORMULA_CELL.sub(",'", line)
    if _MAP in line:
        for name in _MAP_FIELDS:
            if (counts := getattr(fields, name)) not in _ABSENT:
                line = line.replace(_MAP, _map_cell(counts), 1)
    return line + "\r\n"


def _map_cell(counts: msgspec.Raw) -> str:
    """A map's canonical JSON as stored, quoted unless empty (its keys bring quotes)."""
    if counts in _ABSENT:
        return ""
    text = bytes(counts).decode()
    return '"' + text.replace('"', '""') + '"' if '"' in text else text


def _negative_number(fields: Any) -> bool:
    for name in _FLOAT_FIELDS:
        value = getattr(fields, name)
        if value is not None and value < 0:
            return True
    return False


def _careful_line(values: tuple[Any, ...]) -> str:
    cells = ["" if v is None else _text_cell(v) if v.__class__ is str else _cell(v) for v in values]
    return ",".join(cells) + "\r\n"


def _text_cell(value: str) -> str:
    """RFC 4180 quoting where needed, after a ``'`` for what a spreadsheet would run."""
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    if _NEEDS_QUOTES.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def _cell(value: bool | float | msgspec.Raw) -> str:
    if value.__class__ is bool:
        return "true" if value else "false"
    if isinstance(value, msgspec.Raw):
        return _map_cell(value)
    return str(value)


def _lines_of(lines: bytes) -> Iterator[memoryview]:
    """Each line, without its newline and without copying it. (Splitting copied every
    document, and decoding them all at once kept 2,000 records' strings alive together:
    both cost 3-6 µs a record more.)"""
    view, start, find = memoryview(lines), 0, lines.find
    while (end := find(b"\n", start)) >= 0:
        yield view[start:end]
        start = end + 1


class CsvFormat:
    """A rendering of its own: a line depends on its record alone."""

    extension = "csv"
    content_type = "text/csv; charset=utf-8"

    def rendering(self) -> CsvFormat:
        return self

    def start(self) -> bytes:
        return (",".join(RECORD_FIELDS) + "\r\n").encode()

    def render(self, lines: bytes) -> bytes:
        return "".join([_csv_line(_read_fields.decode(line)) for line in _lines_of(lines)]).encode()

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

    def render(self, lines: bytes) -> bytes:
        return lines

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


FORMATS: dict[ExportFormat, FileFormat] = {
    "csv": CsvFormat(),
    "ndjson": NdjsonFormat(),
    "parquet": ParquetFormat(),
}
