"""What the console's pages and forms take in, read as hostile text and turned into the
services' own types by the same models the JSON API validates with, so that both refuse the
same input with the same message; a problem is an ``InvalidRequest`` the page shows beside
the form."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

from kbaudit.api.schemas import ExportRequest
from kbaudit.decoding import whole_number
from kbaudit.domain import EXPORT_FORMATS
from kbaudit.errors import InvalidRequest
from kbaudit.filters import FILTER_NAMES, MANY_VALUED, RecordFilters
from kbaudit.services.exports.jobs import ExportSpec

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
MAX_TEXT = 200
_SEPARATORS = re.compile(r"[\s,]+")
Model = TypeVar("Model", bound=BaseModel)

Fields = Mapping[str, list[Any]]  # a posted form: every value a name was sent with
# The filters typed into text fields, labelled (one missing here is shown by its name); the
# statuses are checkboxes of their vocabulary.
LABELS = {
    "kb_ids": "Knowledge base IDs",
    "actor_user_id": "Actor user ID",
    "session_id": "Session ID",
}
TEXT_FILTERS = {name: LABELS.get(name, name) for name in FILTER_NAMES if name != "statuses"}


def validated(model: type[Model], asked: dict[str, Any]) -> Model:
    """``asked`` as ``model``, or the first problem with it, worded as the API words it."""
    try:
        return model.model_validate(asked)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidRequest(f"{where}: {first['msg']}" if where else first["msg"]) from None


def lenient_instant(text: str) -> datetime | str:
    """A console field may leave out the offset (a browser's date-time input does): UTC is
    meant. Anything else goes to the model as it was typed."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return text
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def instant_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
            asked = {name: lenient_instant(params.get(name, "")) for name in ("start", "end")}
            window = validated(RecordFilters, asked)
            return cls(choice, window.start, window.end)
        if choice not in WINDOWS:
            choice = "7d"
        # Whole hours: the last bucket is not cut short.
        end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return cls(choice, end - WINDOWS[choice], end)

    def filters(self) -> RecordFilters:
        return RecordFilters.window(self.start, self.end)

    @property
    def start_text(self) -> str:
        return instant_text(self.start)

    @property
    def end_text(self) -> str:
        return instant_text(self.end)


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """The query route's window and filters as text, under the API's own parameter names
    (so that a page shows what was asked even when it was wrong)."""

    start: str
    end: str
    values: Mapping[str, tuple[str, ...]]  # each filter's values as typed
    cursor: str | None = None

    @classmethod
    def parse(cls, params: QueryParams, now: datetime) -> RecordQuery:
        return cls.of({name: params.getlist(name) for name in params}, now)

    @classmethod
    def of(cls, fields: Fields, now: datetime) -> RecordQuery:
        def texts(name: str) -> list[str]:
            return [v for v in fields.get(name, []) if isinstance(v, str)]

        def one(name: str, default: str = "") -> str:
            values = texts(name)
            return values[0][:MAX_TEXT].strip() if values and values[0].strip() else default

        def many(name: str) -> tuple[str, ...]:
            return tuple(v for text in texts(name) for v in _SEPARATORS.split(text[:4000]) if v)

        week_ago = now - timedelta(days=7)
        start = instant_text(week_ago.replace(second=0, microsecond=0))
        end = instant_text(now.replace(second=0, microsecond=0) + timedelta(minutes=1))
        values = {
            name: many(name) if name in MANY_VALUED else tuple(filter(None, [one(name)]))
            for name in FILTER_NAMES
        }
        return cls(one("start", start), one("end", end), values, one("cursor") or None)

    def asked(self) -> dict[str, Any]:
        """The window and filters as the API's parameters take them."""
        asked: dict[str, Any] = {
            name: lenient_instant(getattr(self, name)) for name in ("start", "end")
        }
        for name, values in self.values.items():
            if values:
                asked[name] = values if name in MANY_VALUED else values[0]
        return asked

    def filters(self) -> RecordFilters:
        return validated(RecordFilters, self.asked())

    def params(self) -> list[tuple[str, str]]:
        """The query as the API route's parameters (for links), leaving out what is empty."""
        pairs = [("start", self.start), ("end", self.end)]
        return pairs + [(name, value) for name, values in self.values.items() for value in values]


@dataclass(frozen=True, slots=True)
class ExportForm:
    query: RecordQuery
    export_format: str
    formats = EXPORT_FORMATS

    @classmethod
    def blank(cls, now: datetime) -> ExportForm:
        return cls(RecordQuery.of({}, now), "csv")

    @classmethod
    def of(cls, fields: Fields, now: datetime) -> ExportForm:
        chosen = [v for v in fields.get("export_format", []) if isinstance(v, str)]
        return cls(RecordQuery.of(fields, now), chosen[0][:MAX_TEXT] if chosen else "csv")

    def spec(self) -> ExportSpec:
        asked = {**self.query.asked(), "export_format": self.export_format}
        return validated(ExportRequest, asked).spec()


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
        days = whole_number(self.retention_days)
        if days is None:
            raise InvalidRequest("retention days must be a whole number")
        changes: dict[str, Any] = {
            "retention_days": days,
            "archive_before_delete": self.archive_before_delete,
        }
        if self.changes_hold(policy):
            changes |= {
                "legal_hold_enabled": self.legal_hold_enabled,
                "legal_hold_reason": self.reason,
            }
        return changes
