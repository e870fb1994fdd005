"""Bulk loading NDJSON: one record a line; a bad line is reported and the rest still load."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from kbaudit.domain import OrgId, RecordIn
from kbaudit.services.ingest import Outcome, ingest_records
from kbaudit.store.unit_of_work import Store

BATCH_SIZE = 5000


@dataclass
class ImportReport:
    counts: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        return self.counts[Outcome.CREATED] + self.counts[Outcome.UPDATED]


def import_lines(
    store: Store,
    org_id: OrgId,
    lines: Iterable[bytes],
    *,
    on_batch: Callable[[int], None] | None = None,
) -> ImportReport:
    """Load every good line; ``on_batch`` hears how many lines each written batch covered."""
    decoder = msgspec.json.Decoder(RecordIn)
    report = ImportReport()
    batch: list[RecordIn] = []
    line_of: dict[str, int] = {}
    consumed = 0

    def flush() -> None:
        nonlocal consumed
        if batch:
            _write(store, org_id, batch, line_of, report)
        if on_batch:
            on_batch(consumed)
        batch.clear()
        line_of.clear()
        consumed = 0

    for number, line in enumerate(lines, 1):
        consumed += 1
        if not line.strip():
            continue
        try:
            record = decoder.decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            report.errors.append((number, str(exc)))
            continue
        record_id = str(record.id)
        if record_id in line_of:  # a later line for the same record goes in the next batch
            flush()
        batch.append(record)
        line_of[record_id] = number
        if len(batch) >= BATCH_SIZE:
            flush()
    flush()
    return report


def _write(
    store: Store,
    org_id: OrgId,
    batch: list[RecordIn],
    line_of: dict[str, int],
    report: ImportReport,
) -> None:
    result = ingest_records(store, org_id, batch, reject_conflicts=False)
    for item in result.outcomes:
        report.counts[item.outcome] += 1
        if item.outcome is Outcome.CONFLICT:
            report.errors.append((line_of[item.id], f"conflict: {item.reason}"))
