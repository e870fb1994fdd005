"""Reading records: the newest-first keyset query and the detail view."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import orjson

from kbaudit.document import summary_of
from kbaudit.domain import Caller, OrgId
from kbaudit.errors import CursorMismatch, InvalidCursor, InvalidRequest, NotFound
from kbaudit.filters import RecordFilters
from kbaudit.services.access import record_access
from kbaudit.services.clock import Clock
from kbaudit.store.unit_of_work import Store

MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 512


@dataclass(frozen=True, slots=True)
class Page:
    items: list[msgspec.Struct]  # RecordSummary: msgspec.json.encode writes them
    next_cursor: str | None
    has_more: bool


@dataclass(frozen=True, slots=True)
class RecordDetail:
    log: dict[str, Any]
    scopes: list[dict[str, Any]]
    refs: list[dict[str, Any]]


class CursorCodec:
    """Signed, opaque page cursors bound to one organization and one set of filters.

    The cursor carries the last row's ``(created_at, id)``; the HMAC over it, the organization
    and a digest of the filters means it cannot be forged, moved to another organization or
    replayed with other filters.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, org_id: OrgId, scope: str, last: tuple[int, bytes]) -> str:
        """A cursor after ``last`` for the query described by ``scope`` (its filters)."""
        body = orjson.dumps([2, org_id, _digest(scope), last[0], last[1].hex()])
        return f"{_b64(body)}.{_b64(self._sign(body))}"

    def decode(self, cursor: str, org_id: OrgId, scope: str) -> tuple[int, bytes]:
        malformed = InvalidCursor("the cursor is not one this server issued for this query")
        if len(cursor) > MAX_CURSOR_LENGTH or cursor.count(".") != 1:
            raise malformed
        encoded_body, encoded_signature = cursor.split(".")
        try:
            body, signature = _unb64(encoded_body), _unb64(encoded_signature)
        except (binascii.Error, ValueError) as exc:
            raise malformed from exc
        if not hmac.compare_digest(signature, self._sign(body)):
            raise malformed
        version, cursor_org, digest, created_at, record_id = orjson.loads(body)
        if version != 2 or cursor_org != org_id:
            raise malformed
        if digest != _digest(scope):
            raise CursorMismatch("this cursor belongs to a query with other filters or window")
        return created_at, bytes.fromhex(record_id)

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:16]


def query_records(
    store: Store,
    clock: Clock,
    codec: CursorCodec,
    caller: Caller,
    filters: RecordFilters,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}", field=("query", "limit"))
    scope = filters.fingerprint()
    after = codec.decode(cursor, caller.org_id, scope) if cursor else None
    with store.reading() as uow:
        rows = uow.records.page(caller.org_id, filters, after, limit + 1)
    has_more = len(rows) > limit
    items = [summary_of(document) for _, _, document in rows[:limit]]
    next_cursor = None
    if has_more:
        created_at, record_id, _ = rows[limit - 1]
        next_cursor = codec.encode(caller.org_id, scope, (created_at, record_id))
    record_access(
        store,
        clock,
        caller,
        "query",
        result_count=len(items),
        details={"filters": filters.describe(), "limit": limit, "page": bool(cursor)},
    )
    return Page(items, next_cursor, has_more)


def record_detail(store: Store, clock: Clock, caller: Caller, ref: str) -> RecordDetail:
    with store.reading() as uow:
        found = uow.records.find(caller.org_id, ref)
    record_access(
        store,
        clock,
        caller,
        "detail",
        result_count=int(found is not None),
        outcome="ok" if found is not None else "not_found",
        details={"ref": ref[:128]},
    )
    if found is None:
        raise NotFound("no retrieval audit record has that ref or id")
    log = orjson.loads(found)
    return RecordDetail(log=log, scopes=log.pop("scopes"), refs=log.pop("refs"))


def newest_record_at(store: Store, org_id: OrgId) -> datetime | None:
    """When the organization's newest record was created; None when it has none."""
    with store.reading() as uow:
        return uow.records.newest_created_at(org_id)


def _digest(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
