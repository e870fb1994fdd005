"""Page cursors: opaque, signed, bound to one organization and one filter set."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from kbaudit.document import micros
from kbaudit.domain import OrgId
from kbaudit.errors import CursorMismatch, InvalidCursor
from kbaudit.filters import RecordFilters
from kbaudit.services.query import CursorCodec

FILTERS = RecordFilters(
    start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 2, 1, tzinfo=UTC), statuses=("hit",)
)
SCOPE = FILTERS.fingerprint()
KB_X, KB_Y = uuid.UUID(int=1), uuid.UUID(int=2)
LAST = (
    micros(datetime(2026, 1, 5, 3, 4, 5, 6, tzinfo=UTC)),
    uuid.UUID("0b9c1a43-7c58-4a1e-9d1e-57c2f0f1d2a3").bytes,
)


def test_round_trip() -> None:
    codec = CursorCodec(b"k" * 32)
    assert codec.decode(codec.encode(OrgId(1), SCOPE, LAST), OrgId(1), SCOPE) == LAST


def test_a_flipped_character_is_refused() -> None:
    codec = CursorCodec(b"k" * 32)
    cursor = codec.encode(OrgId(1), SCOPE, LAST)
    for index in range(0, len(cursor), 7):
        if cursor[index] == ".":
            continue
        flipped = cursor[:index] + ("A" if cursor[index] != "A" else "B") + cursor[index + 1 :]
        with pytest.raises(InvalidCursor):
            codec.decode(flipped, OrgId(1), SCOPE)


def test_another_servers_cursor_is_refused() -> None:
    cursor = CursorCodec(b"a" * 32).encode(OrgId(1), SCOPE, LAST)
    with pytest.raises(InvalidCursor):
        CursorCodec(b"b" * 32).decode(cursor, OrgId(1), SCOPE)


def test_another_org_or_other_filters_are_refused() -> None:
    codec = CursorCodec(b"k" * 32)
    cursor = codec.encode(OrgId(1), SCOPE, LAST)
    with pytest.raises(InvalidCursor):
        codec.decode(cursor, OrgId(2), SCOPE)
    other = RecordFilters(start=FILTERS.start, end=FILTERS.end, statuses=("miss",))
    with pytest.raises(CursorMismatch):
        codec.decode(cursor, OrgId(1), other.fingerprint())


def test_filter_order_and_offsets_do_not_matter() -> None:
    codec = CursorCodec(b"k" * 32)
    a = RecordFilters(start=FILTERS.start, end=FILTERS.end, kb_ids=(KB_X, KB_Y))
    b = RecordFilters(
        start=FILTERS.start.astimezone(datetime.now().astimezone().tzinfo),
        end=FILTERS.end,
        kb_ids=(KB_Y, KB_X),
    )
    assert (
        codec.decode(codec.encode(OrgId(1), a.fingerprint(), LAST), OrgId(1), b.fingerprint())
        == LAST
    )
