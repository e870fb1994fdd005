"""Retention on PostgreSQL: a month past everyone's retention is dropped whole."""

from __future__ import annotations

from datetime import datetime

from kbaudit.document import micros
from kbaudit.domain import OrgId
from kbaudit.store.models import Month
from kbaudit.store.postgres import partitions
from kbaudit.store.records import HOUR
from kbaudit.store.retention import RetentionRepository
from kbaudit.store.stats import drop_hours


class PostgresRetention(RetentionRepository):
    def record_months(self) -> list[Month]:
        return partitions.months_present(self._connection)

    def hold_month(self, month: Month) -> int:
        return partitions.hold_month(self._connection, month)

    def make_months_ahead(self, now: datetime) -> None:
        this_month = Month.of(now)
        partitions.make_months(self._connection, [this_month, Month.of(this_month.end)])
        partitions.analyze_once_written(self._connection, this_month)

    def organizations_in(self, month: Month) -> list[OrgId]:
        return [OrgId(org) for org in partitions.organizations_in(self._connection, month)]

    def drop_month(self, month: Month) -> None:
        partitions.drop_month(self._connection, month)
        drop_hours(self._connection, micros(month.start) // HOUR, micros(month.end) // HOUR)
