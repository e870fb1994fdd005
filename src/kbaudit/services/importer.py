"""Bulk loading NDJSON: one record a line; a bad line is reported and the rest still load."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from kbaudit.decoding import JsonRefused, refuse_nul_escapes
from kbaudit.document import document_of
from kbaudit.domain import INSTANT_RANGE, OrgId, RecordIn, instant_out_of_range
from kbaudit.services.clock import Clock
from kbaudit.services.ingest import Outcome, Written, write_documents
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
    clock: Clock,
    org_id: OrgId,
    lines: Iterable[bytes],
    *,
    on_batch: Callable[[int], None] | None = None,
) -> ImportReport:
    """Load every good line; ``on_batch`` hears how many lines each written batch covered.

    Batches are parsed and written in turn, on one thread. Parsing batch k+1 on a second
    thread while batch k was written won nothing once parsing had got cheaper: the two
    threads took turns on the GIL at every step of the database's. ``kbaudit import`` of
    100,000 records, two runs each: SQLite 6,395 and 7,316 records/s with the thread,
    7,372 and 8,444 without; PostgreSQL 6,381 and 5,674 with, 6,237 and 5,891 without.
    """
    decoder = msgspec.json.Decoder(RecordIn)
    report = ImportReport()
    batch: list[Written] = []
    line_of: dict[str, int] = {}
    consumed = 0

    def flush() -> None:
        nonlocal batch, line_of, consumed
        _write(store, clock, org_id, batch, line_of, report, consumed, on_batch)
        batch, line_of, consumed = [], {}, 0

    for number, line in enumerate(lines, 1):
        consumed += 1
        if not line.strip():
            continue
        try:
            refuse_nul_escapes(line)
            record = decoder.decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError, JsonRefused) as exc:
            report.errors.append((number, str(exc)))
            continue
        if name := instant_out_of_range(record):
            report.errors.append((number, f"{name}: instants must lie {INSTANT_RANGE}"))
            continue
        write = Written(record, document_of(record))
        record_id = write.document.id_text
        if record_id in line_of:  # a later line for the same record goes in the next batch
            flush()
        batch.append(write)
        line_of[record_id] = number
        if len(batch) >= BATCH_SIZE:
            flush()
    flush()
    report.errors.sort()
    return report


def _write(
    store: Store,
    clock: Clock,
    org_id: OrgId,
    batch: list[Written],
    line_of: dict[str, int],
    report: ImportReport,
    lines: int,
    on_batch: Callable[[int], None] | None,
) -> None:
    if batch:
        result = write_documents(store, clock, org_id, batch, reject_conflicts=False)
        for item in result.outcomes:
            report.counts[item.outcome] += 1
            if item.outcome is Outcome.CONFLICT:
                report.errors.append((line_of[item.id], f"conflict: {item.reason}"))
            elif item.outcome is Outcome.REFUSED:
                report.errors.append((line_of[item.id], f"refused: {item.reason}"))
    if on_batch:
        on_batch(lines)
