"""CSV and NDJSON renderings of exported records.

CSV follows RFC 4180 with a header and the contract's detail fields in the contract's order;
string cells a spreadsheet would run as a formula get a leading ``'``. It renders raw stored
documents (``kbaudit.document``) in ``RECORD_FIELDS`` order. NDJSON is lossless: the canonical
documents themselves, every field plus ``scopes`` and ``refs``, one a line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec
import orjson

from kbaudit.domain import RECORD_FIELDS, RecordIn

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(Protocol):
    extension: str
    content_type: str

    def header(self) -> bytes: ...

    def render(self, documents: Sequence[str]) -> bytes:
        """Rows for these canonical record documents (``kbaudit.document``)."""
        ...


def _fields_of_kind(kind: type[msgspec.inspect.Type]) -> frozenset[str]:
    """The record fields whose type (or an option of it) is of ``kind``."""
    record = msgspec.inspect.type_info(RecordIn)
    assert isinstance(record, msgspec.inspect.StructType)
    names = set()
    for field in record.fields:
        kinds = field.type
        options = kinds.types if isinstance(kinds, msgspec.inspect.UnionType) else (kinds,)
        if any(isinstance(option, kind) for option in options):
            names.add(field.name)
    return frozenset(names)


def _csv_row_function() -> Callable[[dict[str, Any]], list[Any]]:
    """A function from a parsed document to its CSV cells, in ``RECORD_FIELDS`` order, made
    once from the field types: free-text strings that start like a formula get a ``'``,
    booleans read true/false, JSON maps become compact JSON. Generated, so that each record
    costs one call with no loop or type test at run time for the fields that need none."""
    text = _fields_of_kind(msgspec.inspect.StrType)
    flags = _fields_of_kind(msgspec.inspect.BoolType)
    maps = _fields_of_kind(msgspec.inspect.DictType)
    cells = []
    for name in RECORD_FIELDS:
        value = f"d[{name!r}]"
        if name in text:
            cells.append(f"_text({value})")
        elif name in flags:
            cells.append(f"_FLAG[{value}]")
        elif name in maps:
            cells.append(f"_map({value})")
        else:
            cells.append(value)
    source = f"def row(d):\n    return [{', '.join(cells)}]\n"
    namespace: dict[str, Any] = {"_text": _neutral, "_FLAG": _FLAG_TEXT, "_map": _map_text}
    exec(source, namespace)  # noqa: S102 -- the source is built from kbaudit's own field names
    row: Callable[[dict[str, Any]], list[Any]] = namespace["row"]
    return row


_FLAG_TEXT = {True: "true", False: "false", None: None}


def _neutral(value: str | None) -> str | None:
    if value and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _map_text(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class CsvFormat:
    """The C ``csv`` writer does the quoting; a generated function picks the cells."""

    extension = "csv"
    content_type = "text/csv; charset=utf-8"
    _row = staticmethod(_csv_row_function())

    def header(self) -> bytes:
        return (",".join(RECORD_FIELDS) + "\r\n").encode()

    def render(self, documents: Sequence[str]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerows(map(self._row, map(orjson.loads, documents)))
        return buffer.getvalue().encode()


class NdjsonFormat:
    """The documents as they are: canonical JSON, one a line."""

    extension = "ndjson"
    content_type = "application/x-ndjson"

    def header(self) -> bytes:
        return b""

    def render(self, documents: Sequence[str]) -> bytes:
        if not documents:
            return b""
        return ("\n".join(documents) + "\n").encode()


FORMATS: dict[str, ExportFormat] = {"csv": CsvFormat(), "ndjson": NdjsonFormat()}
