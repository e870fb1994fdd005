"""The periodic sweep: what no single worker can be trusted to finish.

It takes parts back from workers that stopped heartbeating, re-sends work whose queue
message was lost, finalizes jobs whose last part ended without doing so, and expires jobs:
their blobs are deleted and their data keys destroyed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import structlog

from kbaudit.domain import JobStatus
from kbaudit.services.exports.deps import ExportDeps
from kbaudit.services.exports.parts import blob_prefix, finalize_if_done, tidy
from kbaudit.store.models import PartStatus

log = structlog.get_logger("kbaudit.exports")


@dataclass(frozen=True, slots=True)
class SweepReport:
    parts_recovered: int = 0
    parts_redispatched: int = 0
    jobs_replanned: int = 0
    jobs_finalized: int = 0
    jobs_expired: int = 0


def sweep(deps: ExportDeps) -> SweepReport:
    now = deps.clock()
    quiet_since = now - timedelta(seconds=deps.config.lease_seconds)
    with deps.store.writing() as uow:
        released = uow.exports.release_stale_parts(now, deps.config.part_attempts)
        running = uow.exports.jobs_in((JobStatus.RUNNING,))
        ended = [job.id for job in running if finalize_if_done(deps, uow, job.id, now)]
        uow.commit()
    for job_id in ended:
        tidy(deps, job_id)
    finalized = len(ended)
    with deps.store.reading() as uow:
        waiting = uow.exports.parts_in(
            PartStatus.PENDING, updated_before=now + timedelta(seconds=1)
        )
        pending = uow.exports.jobs_in((JobStatus.PENDING,))
        stalled = [job for job in pending if job.created_at < quiet_since]
        expiring = uow.exports.jobs_expiring(now)
    # Redelivery is harmless: a claim succeeds once, and planning moves a job out of pending once.
    released_keys = {(part.job_id, part.part_no) for part in released}
    redispatch = [
        p for p in waiting if p.updated_at < quiet_since or (p.job_id, p.part_no) in released_keys
    ]
    for part in redispatch:
        deps.dispatcher.run_part(part.job_id, part.part_no)
    for job in stalled:
        deps.dispatcher.plan_export(job.id)
    expired = sum(_expire(deps, job.id, now) for job in expiring)
    _delete_expired_files(deps, now)
    report = SweepReport(len(released), len(redispatch), len(stalled), finalized, expired)
    if report != SweepReport():
        log.info("export_sweep", **asdict(report))
    return report


def _expire(deps: ExportDeps, job_id: str, now: datetime) -> bool:
    """Mark the job expired and destroy its data key, before its files go: from then on no
    token is minted for them, and what is left of them cannot be opened."""
    with deps.store.writing() as uow:
        expired = uow.exports.expire_job(job_id)
        if expired:
            deps.announce(uow, job_id, now)
        uow.commit()
    return expired


def _delete_expired_files(deps: ExportDeps, now: datetime) -> None:
    """Delete the files of expired jobs; a deletion cut short is done again next time."""
    with deps.store.reading() as uow:
        jobs = uow.exports.jobs_with_files_to_delete()
        prefixes = {
            job.id: blob_prefix(uow.keys.organization(job.org_id).uuid, job.id) for job in jobs
        }
    for job_id, prefix in prefixes.items():
        deps.blobs.delete_prefix(prefix)
        with deps.store.writing() as uow:
            uow.exports.files_deleted(job_id, now)
            uow.commit()
