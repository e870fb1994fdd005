"""What the console's pages and forms take in, read as hostile text and turned into the
services' own types; a problem is an ``InvalidRequest`` the page shows beside the form."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import QueryParams

from kbaudit.domain import INSTANT_RANGE, RETRIEVAL_STATUSES, RecordFilters, in_instant_range
from kbaudit.errors import InvalidRequest
from kbaudit.services.exports.jobs import ExportSpec

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
FORMATS = ("csv", "ndjson", "parquet")
MAX_VALUES = 100
MAX_TEXT = 200
_SEPARATORS = re.compile(r"[\s,]+")

Fields = Mapping[str, list[Any]]  # a posted form: every value a name was sent with


def instant(text: str, name: str) -> datetime:
    """RFC 3339 text (a missing offset means UTC), as the API's window takes it."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name} is not a date and time (like 2026-05-01T00:00:00Z): {text[:40]!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not in_instant_range(parsed):
        raise InvalidRequest(f"{name} must lie {INSTANT_RANGE}")
    return parsed.astimezone(UTC)


def instant_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uuid(text: str, name: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidRequest(f"{name}: {text[:40]!r} is not a UUID") from None


def _optional_uuid(text: str, name: str) -> str | None:
    return _uuid(text, name) if text else None


@dataclass(frozen=True, slots=True)
class Window:
    """The overview's window: the last 24 hours, 7 days or 30 days, or one given."""

    choice: str
    start: datetime
    end: datetime

    @classmethod
    def parse(cls, params: QueryParams, now: datetime) -> Window:
        choice = params.get("window", "7d")
        if choice == "custom":
            start = instant(params.get("start", ""), "start")
            end = instant(params.get("end", ""), "end")
            if start >= end:
                raise InvalidRequest("end must be later than start")
            return cls(choice, start, end)
        if choice not in WINDOWS:
            choice = "7d"
        # Whole hours: the last bucket is not cut short.
        end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return cls(choice, end - WINDOWS[choice], end)

    def filters(self) -> RecordFilters:
        return RecordFilters(start=self.start, end=self.end)

    @property
    def start_text(self) -> str:
        return instant_text(self.start)

    @property
    def end_text(self) -> str:
        return instant_text(self.end)


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """The query route's window and filters, under the API's own parameter names, as text
    (so that a page shows what was asked even when it was wrong)."""

    start: str
    end: str
    statuses: tuple[str, ...] = ()
    kb_ids: tuple[str, ...] = ()
    actor_user_id: str = ""
    session_id: str = ""
    cursor: str | None = None

    @classmethod
    def parse(cls, params: QueryParams, now: datetime) -> RecordQuery:
        return cls.of({name: params.getlist(name) for name in params}, now)

    @classmethod
    def of(cls, fields: Fields, now: datetime) -> RecordQuery:
        def one(name: str, default: str = "") -> str:
            values = [v for v in fields.get(name, []) if isinstance(v, str)]
            return values[0][:MAX_TEXT] if values and values[0].strip() else default

        def many(name: str) -> tuple[str, ...]:
            texts = [v for v in fields.get(name, []) if isinstance(v, str)]
            return tuple(v for text in texts for v in _SEPARATORS.split(text[:4000]) if v)

        week_ago = now - timedelta(days=7)
        return cls(
            start=one("start", instant_text(week_ago.replace(second=0, microsecond=0))),
            end=one(
                "end", instant_text(now.replace(second=0, microsecond=0) + timedelta(minutes=1))
            ),
            statuses=many("statuses"),
            kb_ids=many("kb_ids"),
            actor_user_id=one("actor_user_id").strip(),
            session_id=one("session_id").strip(),
            cursor=one("cursor") or None,
        )

    def filters(self) -> RecordFilters:
        start, end = instant(self.start, "start"), instant(self.end, "end")
        if start >= end:
            raise InvalidRequest("end must be later than start")
        if len(self.statuses) > MAX_VALUES or len(self.kb_ids) > MAX_VALUES:
            raise InvalidRequest(f"at most {MAX_VALUES} statuses and {MAX_VALUES} knowledge bases")
        for status in self.statuses:
            if status not in RETRIEVAL_STATUSES:
                raise InvalidRequest(
                    f"statuses: {status[:40]!r} is not one of {', '.join(RETRIEVAL_STATUSES)}"
                )
        return RecordFilters(
            start=start,
            end=end,
            kb_ids=tuple(sorted({_uuid(kb, "kb_ids") for kb in self.kb_ids})),
            statuses=tuple(sorted(set(self.statuses))),
            actor_user_id=_uuid(self.actor_user_id, "actor_user_id")
            if self.actor_user_id
            else None,
            session_id=_uuid(self.session_id, "session_id") if self.session_id else None,
        )

    def params(self) -> list[tuple[str, str]]:
        """The query as the API route's parameters (for links), leaving out what is empty."""
        pairs = [("start", self.start), ("end", self.end)]
        pairs += [("statuses", status) for status in self.statuses]
        pairs += [("kb_ids", kb) for kb in self.kb_ids]
        pairs += [
            (name, value)
            for name, value in (
                ("actor_user_id", self.actor_user_id),
                ("session_id", self.session_id),
            )
            if value
        ]
        return pairs


@dataclass(frozen=True, slots=True)
class ExportForm:
    query: RecordQuery
    export_format: str

    @classmethod
    def blank(cls, now: datetime) -> ExportForm:
        return cls(RecordQuery.of({}, now), "csv")

    @classmethod
    def of(cls, fields: Fields, now: datetime) -> ExportForm:
        chosen = [v for v in fields.get("export_format", []) if isinstance(v, str)]
        return cls(RecordQuery.of(fields, now), chosen[0][:MAX_TEXT] if chosen else "csv")

    def spec(self) -> ExportSpec:
        if self.export_format not in FORMATS:
            raise InvalidRequest(f"the format must be one of {', '.join(FORMATS)}")
        return ExportSpec(self.export_format, self.query.filters())


@dataclass(frozen=True, slots=True)
class RetentionForm:
    retention_days: str
    archive_before_delete: bool
    legal_hold_enabled: bool
    reason: str
    confirmed: bool

    @classmethod
    def of(cls, fields: Fields) -> RetentionForm:
        def text(name: str) -> str:
            values = [v for v in fields.get(name, []) if isinstance(v, str)]
            return values[0][:500] if values else ""

        return cls(
            retention_days=text("retention_days").strip(),
            archive_before_delete=text("archive_before_delete") == "on",
            legal_hold_enabled=text("legal_hold_enabled") == "on",
            reason=text("legal_hold_reason").strip(),
            confirmed=text("confirm") == "yes",
        )

    def changes_hold(self, policy: Mapping[str, Any]) -> bool:
        return self.legal_hold_enabled != bool(policy["legal_hold_enabled"])

    def confirmed_with_reason(self) -> bool:
        return self.confirmed and bool(self.reason)

    def confirmation_problem(self) -> str | None:
        if self.confirmed and not self.reason:
            return "Give the reason for this change to the legal hold."
        return None

    def changes(self, policy: Mapping[str, Any]) -> dict[str, Any]:
        if not self.retention_days.isdigit():
            raise InvalidRequest("retention days must be a whole number")
        changes: dict[str, Any] = {
            "retention_days": int(self.retention_days),
            "archive_before_delete": self.archive_before_delete,
        }
        if self.changes_hold(policy):
            changes |= {
                "legal_hold_enabled": self.legal_hold_enabled,
                "legal_hold_reason": self.reason,
            }
        return changes
