"""Planning a job: fix its snapshot and cut the matching records into deterministic parts."""

from __future__ import annotations

from datetime import datetime

import structlog

from kbaudit.domain import JobStatus
from kbaudit.services.exports.deps import ExportDeps
from kbaudit.services.exports.formats import FORMATS
from kbaudit.services.exports.jobs import filters_of
from kbaudit.store.models import ExportPart

log = structlog.get_logger("kbaudit.exports")


def plan_job(deps: ExportDeps, job_id: str) -> None:
    """Move a pending job to running with its parts, then dispatch every part. Safe to call
    twice: only the call that moves the job out of pending plans it."""
    # The snapshot's newest seq bounds the export, and the part boundaries are computed from
    # the same view.
    with deps.store.snapshot() as (uow, snapshot_seq):
        job = uow.exports.job(job_id)
        if job is None or job.status is not JobStatus.PENDING:
            return
        started_at = deps.clock()
        log_size = uow.log.size(job.org_id)
        total, bounds = uow.records.part_bounds(job.org_id, filters_of(job), job.rows_per_file)
    extension = FORMATS[job.export_format].extension + (".age" if job.recipients else "")
    parts = plan_parts(job_id, extension, total, bounds, job.rows_per_file, started_at)
    with deps.store.writing() as uow:
        if not uow.exports.start_job(job_id, started_at, snapshot_seq, log_size):
            return
        uow.exports.add_parts(parts)
        uow.commit()
    log.info("export_planned", export_id=job_id, rows=total, parts=len(parts))
    for part in parts:
        deps.dispatcher.run_part(job_id, part.part_no)


def plan_parts(
    job_id: str,
    extension: str,
    total: int,
    bounds: list[tuple[datetime, str]],
    rows_per_file: int,
    now: datetime,
) -> list[ExportPart]:
    """Part k covers from its first key (part 0: the window start) up to the next part's
    first key. An export with no rows still gets one (empty) file."""
    parts = []
    for number in range(max(1, len(bounds))):
        lower = bounds[number] if 0 < number < len(bounds) else None
        upper = bounds[number + 1] if number + 1 < len(bounds) else None
        parts.append(
            ExportPart(
                job_id=job_id,
                part_no=number,
                lo_created_at=lower[0] if lower else None,
                lo_id=lower[1] if lower else None,
                hi_created_at=upper[0] if upper else None,
                hi_id=upper[1] if upper else None,
                planned_rows=max(0, min(rows_per_file, total - number * rows_per_file)),
                file_name=f"kb-audit-{number + 1:05d}.{extension}",
                updated_at=now,
            )
        )
    return parts
