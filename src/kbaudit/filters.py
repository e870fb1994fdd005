"""The window and filters over records: declared once, here, and taken as they are by the
query and stats routes (as query parameters), by an export's body, and by the console's
forms, so that each refuses the same input with the same message.

Adding a filter is a field of ``RecordFilters`` and its SQL (``filter_conditions`` in
``kbaudit.store.records``). The API names every filter as the Feather contract does; a
filter whose values come from a vocabulary takes text, so that an unknown value is a 422
that lists the known ones rather than a schema error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import UnionType
from typing import Annotated, Any, Final, Self, TypeVar, Union, get_args, get_origin
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from kbaudit.domain import INSTANT_RANGE, RETRIEVAL_STATUSES, in_instant_range

MAX_FILTER_VALUES: Final = 100
WINDOW: Final = ("start", "end")
_DATE_TIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")
Value = TypeVar("Value", str, UUID)


def _date_time_text(value: object) -> object:
    """Refuse what pydantic would take for an instant but a person did not mean as one: a
    bare number (seconds since the epoch, with no timezone written)."""
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE_TIME_TEXT.match(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time with a timezone, like 2026-01-01T00:00:00Z")


def _in_range(instant: datetime) -> datetime:
    if not in_instant_range(instant):
        raise PydanticCustomError("instant_range", "instants must lie " + INSTANT_RANGE)
    return instant.astimezone(UTC)


# A window's instant: RFC 3339 text with its timezone, inside the range records may have.
WindowInstant = Annotated[
    AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_in_range)
]


def _known_status(status: str) -> str:
    if status not in RETRIEVAL_STATUSES:
        allowed = " or ".join(repr(known) for known in RETRIEVAL_STATUSES)
        raise PydanticCustomError("enum", "Input should be " + allowed)
    return status


def _values(values: tuple[Value, ...] | None) -> tuple[Value, ...] | None:
    """A filter's values as a set (sorted, for one canonical form); none given: no filter."""
    if not values:
        return None
    if len(values) > MAX_FILTER_VALUES:
        raise PydanticCustomError("too_long", f"at most {MAX_FILTER_VALUES} values")
    return tuple(sorted(set(values)))


class RecordFilters(BaseModel):
    """Records created in ``[start, end)`` that match every filter given; a filter matches
    any of its values. ``kb_ids`` matches a record any of whose scopes names one of them."""

    model_config = ConfigDict(frozen=True)

    start: Annotated[WindowInstant, Field(description="Inclusive window start (required).")]
    end: Annotated[WindowInstant, Field(description="Exclusive window end (required).")]
    kb_ids: Annotated[tuple[UUID, ...] | None, AfterValidator(_values)] = None
    statuses: Annotated[
        tuple[Annotated[str, AfterValidator(_known_status)], ...] | None, AfterValidator(_values)
    ] = None
    actor_user_id: UUID | None = None
    session_id: UUID | None = None

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise PydanticCustomError("window", "end must be later than start")
        return end

    @classmethod
    def window(cls, start: datetime, end: datetime) -> Self:
        """Every record of ``[start, end)``."""
        return cls(start=start, end=end)

    @classmethod
    def of(cls, echoed: dict[str, Any], start: datetime, end: datetime) -> RecordFilters:
        """The filters ``echo`` wrote, over the window."""
        return RecordFilters.model_validate({**echoed, "start": start, "end": end})

    def only_filters(self) -> RecordFilters:
        """These filters alone, without what a model built on them adds (an export's
        format, say)."""
        if type(self) is RecordFilters:
            return self
        names = RecordFilters.model_fields
        return RecordFilters.model_construct(**{name: getattr(self, name) for name in names})

    def echo(self) -> dict[str, Any]:
        """The filters beyond the window, as JSON values: an export job shows them so."""
        return self.only_filters().model_dump(mode="json", exclude=set(WINDOW))

    def describe(self) -> dict[str, Any]:
        """The window and filters as JSON values (the access log keeps them so)."""
        return self.only_filters().model_dump(mode="json")

    def narrowed_by(self) -> list[str]:
        """The filters given, by name, beyond the window."""
        return [name for name, value in self.echo().items() if value is not None]

    def fingerprint(self) -> str:
        """A canonical text of the window and filters: equal filters, equal text."""
        return "|".join(_text(getattr(self, name)) for name in RecordFilters.model_fields)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _takes_several(annotation: object) -> bool:
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return any(get_origin(option) is tuple for option in (*options, annotation))


# The filters beyond the window, by name, and those of them that take several values.
FILTER_NAMES: Final = tuple(name for name in RecordFilters.model_fields if name not in WINDOW)
MANY_VALUED: Final = frozenset(
    name for name in FILTER_NAMES if _takes_several(RecordFilters.model_fields[name].annotation)
)
