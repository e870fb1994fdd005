"""The canonical record document: one JSON text per accepted write of a record.

The document is the record as the detail route shows it, flattened (every detail field plus
``scopes`` and ``refs``), in RFC 8785 canonical form. The store keeps it beside the few columns
that queries filter and sort on; the NDJSON export writes it as it is; the query and detail
routes read it back; two writes of a record are the same write when their documents are equal.

orjson does the encoding. Where it departs from RFC 8785 the ``rfc8785`` package takes over
for that one value: numbers that are not integers (ECMAScript formatting) and maps with
non-ASCII keys (RFC 8785 sorts by UTF-16 code units, orjson by code points; the two orders
differ only beyond ASCII).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import orjson
import rfc8785

from kbaudit.domain import SUMMARY_FIELDS, RecordIn, RefIn, ScopeIn, default_ref

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def micros(instant: datetime) -> int:
    """Microseconds since the epoch: how the store keeps instants, in both engines."""
    return (instant - EPOCH) // _MICROSECOND


def instant_of(value: int) -> datetime:
    return EPOCH + value * _MICROSECOND


def instant_text(instant: datetime) -> str:
    """RFC 3339 in UTC, always with microseconds: one width, so text order is time order."""
    if instant.utcoffset():
        instant = instant.astimezone(UTC)
    return instant.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True, slots=True)
class RecordDocument:
    """One write of a record: its canonical document and the values the store indexes."""

    id: uuid.UUID
    id_text: str  # the id as the document writes it; a UUID's str() is slow, and often needed
    ref: str
    created_at: int  # microseconds since the epoch
    retrieval_status: str | None
    audit_write_status: str
    actor_user_id: uuid.UUID | None
    session_id: uuid.UUID | None
    kb_ids: tuple[uuid.UUID, ...]
    body: str

    @property
    def chosen_ref(self) -> str | None:
        """The ref when the writer chose it; None when it is the one derived from the id."""
        return None if self.ref == default_ref(self.id_text) else self.ref


def document_of(record: RecordIn, ref: str | None = None) -> RecordDocument:
    """The document of ``record``, with ``ref`` (else the record's own, else the default)."""
    fields = msgspec.to_builtins(record)
    record_id = fields["id"]  # msgspec's text of the id: canonical, and faster than str()
    ref = ref or record.ref or default_ref(record_id)
    fields["ref"] = ref
    kb_ids = {scope.knowledge_base_id for scope in record.scopes} - {None}
    return RecordDocument(
        id=record.id,
        id_text=record_id,
        ref=ref,
        created_at=micros(record.created_at),
        retrieval_status=record.retrieval_status,
        audit_write_status=record.audit_write_status,
        actor_user_id=record.actor_user_id,
        session_id=record.session_id,
        kb_ids=tuple(sorted(kb for kb in kb_ids if kb is not None)),
        body=_record_json(record, fields).decode(),
    )


def _record_json(record: RecordIn, fields: dict[str, Any]) -> bytes:
    """``canonical_json`` of the record's ``fields`` (msgspec's builtins of it), sparing the
    walk over every value: this runs for each record written. Only instants, numbers with a
    fraction and count maps can come out of orjson otherwise than RFC 8785 has them; the
    record's type says where they are."""
    for name in _INSTANT_FIELDS:
        text = fields[name]
        # msgspec already wrote a UTC instant with microseconds as instant_text would.
        if text is not None and not (len(text) == _INSTANT_WIDTH and text[-1] == "Z"):
            fields[name] = instant_text(getattr(record, name))
    _canonical_at(fields, _FLOAT_FIELDS, _MAP_FIELDS)
    for scope in fields["scopes"]:
        _canonical_at(scope, _SCOPE_FLOATS, _SCOPE_MAPS)
    for chunk in fields["refs"]:
        _canonical_at(chunk, _REF_FLOATS, _REF_MAPS)
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def _canonical_at(fields: dict[str, Any], floats: tuple[str, ...], maps: tuple[str, ...]) -> None:
    for name in floats:
        if fields[name] is not None:
            fields[name] = orjson.Fragment(number_json(fields[name]))
    for name in maps:
        counts = fields[name]
        # Count maps hold only integers: their keys are all that orjson may order otherwise.
        if counts is not None and not all(key.isascii() for key in counts):
            fields[name] = orjson.Fragment(canonical_slow(counts))


def fields_of_kind(
    struct: type[msgspec.Struct], kind: type[msgspec.inspect.Type]
) -> tuple[str, ...]:
    """The fields of ``struct`` whose type (or an option of it) is of ``kind``."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    names = []
    for field in info.fields:
        options = (
            field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        )
        if any(isinstance(option, kind) for option in options):
            names.append(field.name)
    return tuple(names)


_INSTANT_FIELDS: Final = fields_of_kind(RecordIn, msgspec.inspect.DateTimeType)
_INSTANT_WIDTH: Final = len("2026-01-02T03:04:05.000006Z")
_FLOAT_FIELDS: Final = fields_of_kind(RecordIn, msgspec.inspect.FloatType)
_MAP_FIELDS: Final = fields_of_kind(RecordIn, msgspec.inspect.DictType)
_SCOPE_FLOATS: Final = fields_of_kind(ScopeIn, msgspec.inspect.FloatType)
_SCOPE_MAPS: Final = fields_of_kind(ScopeIn, msgspec.inspect.DictType)
_REF_FLOATS: Final = fields_of_kind(RefIn, msgspec.inspect.FloatType)
_REF_MAPS: Final = fields_of_kind(RefIn, msgspec.inspect.DictType)


def canonical_json(value: Any) -> bytes:
    """RFC 8785 JSON of plain data (dicts with str keys, lists, str, int, float, bool, None,
    aware datetimes, which become ``instant_text``)."""
    return orjson.dumps(_canonical_values(value), option=orjson.OPT_SORT_KEYS)


def _canonical_values(value: Any) -> Any:
    if isinstance(value, dict):
        if not all(key.isascii() for key in value):
            return orjson.Fragment(canonical_slow(value))
        return {key: _canonical_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_values(item) for item in value]
    if isinstance(value, float):
        return orjson.Fragment(number_json(value))
    if isinstance(value, datetime):
        return instant_text(value)
    return value


def number_json(value: float) -> bytes:
    """A number as RFC 8785 writes it (ECMAScript's Number::toString). Between 1e-4 and 1e16
    Python's ``repr`` gives the same shortest round-trip digits in the same plain notation,
    less the ".0" of whole numbers: 0.3 µs against the reference encoder's 1.2 µs."""
    if _PLAIN_FROM <= abs(value) < _PLAIN_BELOW:
        return repr(value).removesuffix(".0").encode()
    return rfc8785.dumps(value)


_PLAIN_FROM: Final = 1e-4
_PLAIN_BELOW: Final = 1e16


def canonical_slow(value: Any) -> bytes:
    """The reference encoder, for the values orjson would order or format otherwise."""
    return rfc8785.dumps(_plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return instant_text(value)
    return value


# The query route's summary of a record: its first fields in the contract's order, each
# kept as the document's own JSON bytes. Decoding into it skips scopes and refs (two thirds
# of a document) without building them, and nothing is parsed to be encoded again: about
# 4 µs a record against 8-11 µs through a dict.
RecordSummary: Final = msgspec.defstruct(
    "RecordSummary", [(name, msgspec.Raw) for name in SUMMARY_FIELDS]
)
_read_summary = msgspec.json.Decoder(RecordSummary)


def summary_of(body: str | bytes) -> msgspec.Struct:
    """The query route's summary of a stored document; ``msgspec.json.encode`` writes it."""
    summary: msgspec.Struct = _read_summary.decode(body)
    return summary


def summary_values(summary: msgspec.Struct) -> dict[str, Any]:
    """The summary's fields as Python values, for a page to show."""
    values: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(summary))
    return values


def leaf_of(org_uuid: str, record_id: str, audit_write_status: str, document: str | bytes) -> bytes:
    """The data of one log leaf: a write of a record, as RFC 8785 JSON. The document is
    canonical already and the other values are uuids (in their canonical text) and a status
    word, so the keys are written in their sorted order around them: this runs for every
    write."""
    body = document.encode() if isinstance(document, str) else document
    return b"".join(
        (
            b'{"audit_write_status":',
            orjson.dumps(audit_write_status),
            b',"organization_id":"',
            org_uuid.encode(),
            b'","record":',
            body,
            b',"record_id":"',
            record_id.encode(),
            b'"}',
        )
    )
