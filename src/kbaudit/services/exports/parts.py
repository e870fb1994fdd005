"""Running one part: claim it under a lease, stream its rows through the format, zstd and the
AEAD into the blob store, heartbeat while doing so, and record the file. The last part to end
finalizes the job, exactly once."""

from __future__ import annotations

import os
import socket
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta

import structlog

from kbaudit.crypto.age import AgeEncryptingWriter
from kbaudit.crypto.envelope import WrappedKeyset
from kbaudit.crypto.files import EncryptedFileWriter
from kbaudit.domain import JobStatus
from kbaudit.services.exports.deps import ExportDeps
from kbaudit.services.exports.formats import FORMATS
from kbaudit.services.exports.jobs import filters_of
from kbaudit.services.exports.manifest import write_manifest
from kbaudit.services.exports.pipeline import WriteBehind
from kbaudit.store.models import ExportJob, ExportPart, JobEnding, PartStatus, WrittenFile
from kbaudit.store.unit_of_work import UnitOfWork

log = structlog.get_logger("kbaudit.exports")
PROGRESS_SECONDS = 2.0  # how often a running part reports its rows


class LeaseLost(Exception):
    """Another worker took this part over; this attempt must stop without recording."""


def blob_prefix(org_uuid: str, job_id: str) -> str:
    return f"exports/{org_uuid}/{job_id}"


def file_context(org_uuid: str, job_id: str, file_name: str) -> bytes:
    """Associated data of a file: a blob moved to another export or name fails to open."""
    return f"kbaudit/export-file/{org_uuid}/{job_id}/{file_name}".encode()


def run_part(deps: ExportDeps, job_id: str, part_no: int) -> None:
    """Do one part, retrying it on its own up to the configured attempts."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    while True:
        claimed = _claim(deps, job_id, part_no, owner)
        if claimed is None:
            return
        job, part, org_uuid = claimed
        try:
            written = _write(deps, job, part, org_uuid, owner)
        except LeaseLost:
            log.warning("export_part_lease_lost", export_id=job_id, part=part_no)
            return
        except Exception as exc:  # any failure of one attempt is retried, then recorded
            log.warning("export_part_failed", export_id=job_id, part=part_no, error=repr(exc))
            if _record_failure(deps, job_id, part_no, owner, part.attempts, exc):
                return
            time.sleep(deps.config.retry_backoff_seconds * part.attempts)
            continue
        _record_success(deps, job_id, part_no, owner, written)
        return


def _claim(
    deps: ExportDeps, job_id: str, part_no: int, owner: str
) -> tuple[ExportJob, ExportPart, str] | None:
    now = deps.clock()
    with deps.store.writing() as uow:
        job = uow.exports.job(job_id)
        if job is None or job.status is not JobStatus.RUNNING:
            return None
        until = now + timedelta(seconds=deps.config.lease_seconds)
        if not uow.exports.claim_part(job_id, part_no, owner, now, until):
            return None
        part = next(p for p in uow.exports.parts(job_id) if p.part_no == part_no)
        org_uuid = uow.keys.organization(job.org_id).uuid
        uow.commit()
    return job, part, org_uuid


def _write(
    deps: ExportDeps, job: ExportJob, part: ExportPart, org_uuid: str, owner: str
) -> WrittenFile:
    export_format = FORMATS[job.export_format]
    # A running job has both; only ending it (and then expiring it) takes them away.
    assert job.wrapped_keyset is not None
    assert job.snapshot_seq is not None
    aead = deps.keys.open_data_key(
        org_uuid, job.id, WrappedKeyset(job.kek_version, job.wrapped_keyset)
    )
    blob_key = f"{blob_prefix(org_uuid, job.id)}/{part.file_name}.{owner.rsplit(':', 1)[-1]}"
    heartbeat = Heartbeat(deps, job.id, part.part_no, owner)
    rows = partial_rows = 0
    context = file_context(org_uuid, job.id, part.file_name)
    rendering = export_format.rendering()
    with (
        deps.store.streaming() as uow,
        deps.blobs.writer(blob_key) as sink,
        EncryptedFileWriter(aead, context, sink) as out,
        _delivered_form(job, out) as plaintext,
    ):
        documents = uow.records.export_documents(
            job.org_id, filters_of(job), job.snapshot_seq, part.lower, part.upper
        )
        # Compressing and storing overlap reading and rendering (see pipeline.py); the
        # thread has stopped before the file is closed.
        with WriteBehind(plaintext.write) as behind:
            behind.put(rendering.start())
            for batch in documents:
                behind.put(rendering.render(batch.lines))
                rows += batch.rows
                partial_rows += batch.unfinalized
                heartbeat.beat(rows)
            behind.put(rendering.finish())
    if plaintext is out:
        return WrittenFile(
            blob_key, rows, partial_rows, out.plaintext_bytes, out.ciphertext_bytes, out.sha256
        )
    # At rest, kbaudit's own encryption holds the age file: what it stored is what it sends.
    return WrittenFile(
        blob_key,
        rows,
        partial_rows,
        plaintext.plaintext_bytes,
        out.ciphertext_bytes,
        plaintext.sha256,
        delivered_bytes=out.plaintext_bytes,
        sha256_delivered=out.sha256,
    )


def _delivered_form(
    job: ExportJob, out: EncryptedFileWriter
) -> AbstractContextManager[EncryptedFileWriter | AgeEncryptingWriter]:
    """Where the plaintext goes: straight to the file at rest, or first through age."""
    if job.recipients:
        return AgeEncryptingWriter(job.recipients, out.write)
    return nullcontext(out)


class Heartbeat:
    """Extends the lease (at least a third of the way through it) and records the rows
    written so far, for the job's progress; notices when the lease was taken away."""

    def __init__(self, deps: ExportDeps, job_id: str, part_no: int, owner: str) -> None:
        self._deps, self._job_id, self._part_no, self._owner = deps, job_id, part_no, owner
        self._every = min(PROGRESS_SECONDS, deps.config.lease_seconds / 3)
        self._last = time.monotonic()

    def beat(self, rows: int) -> None:
        if time.monotonic() - self._last < self._every:
            return
        now = self._deps.clock()
        until = now + timedelta(seconds=self._deps.config.lease_seconds)
        with self._deps.store.writing() as uow:
            held = uow.exports.extend_lease(
                self._job_id, self._part_no, self._owner, until, rows, now
            )
            uow.commit()
        if not held:
            raise LeaseLost()
        self._last = time.monotonic()


def _record_success(
    deps: ExportDeps, job_id: str, part_no: int, owner: str, written: WrittenFile
) -> None:
    now = deps.clock()
    with deps.store.writing() as uow:
        held = uow.exports.finish_part(job_id, part_no, owner, written, now)
        ended = held and finalize_if_done(deps, uow, job_id, now)
        uow.commit()
    if not held:
        log.warning("export_part_lease_lost", export_id=job_id, part=part_no)
    if ended:
        tidy(deps, job_id)


def _record_failure(
    deps: ExportDeps, job_id: str, part_no: int, owner: str, attempts: int, exc: Exception
) -> bool:
    """Put the part back for another attempt, or fail it for good. True when it is over."""
    now = deps.clock()
    final = attempts >= deps.config.part_attempts
    with deps.store.writing() as uow:
        error = f"{type(exc).__name__}: {exc}"[:500]
        held = uow.exports.release_part(job_id, part_no, owner, error, now, final=final)
        ended = held and final and finalize_if_done(deps, uow, job_id, now)
        uow.commit()
    if ended:
        tidy(deps, job_id)
    return final or not held


def tidy(deps: ExportDeps, job_id: str) -> None:
    """Once a job has ended, delete what attempts left behind beside its files: uploads cut
    off by a killed worker, files of attempts that lost their lease."""
    with deps.store.reading() as uow:
        job = uow.exports.job(job_id)
        assert job is not None
        org_uuid = uow.keys.organization(job.org_id).uuid
        parts = uow.exports.parts(job_id)
        keep = {part.file.blob_key for part in parts if part.status is PartStatus.DONE}
    pruned = deps.blobs.prune(blob_prefix(org_uuid, job_id), keep)
    if pruned:
        log.info("export_leftovers_removed", export_id=job_id, blobs=pruned)


def finalize_if_done(deps: ExportDeps, uow: UnitOfWork, job_id: str, now: datetime) -> bool:
    """End the job when no part is left to run. The guarded update makes it happen once."""
    uow.exports.lock_job(job_id)
    parts = uow.exports.parts(job_id)
    if any(part.status.open for part in parts):
        return False
    done = [part for part in parts if part.status is PartStatus.DONE]
    failed_count = sum(part.planned_rows for part in parts if part.status is PartStatus.FAILED)
    if failed_count == 0 and len(done) == len(parts):
        status, error_code = JobStatus.SUCCEEDED, None
    elif done:
        status, error_code = JobStatus.PARTIAL, "parts_failed"
    else:
        status, error_code = JobStatus.FAILED, "export_failed"
    ending = JobEnding(
        status=status,
        error_code=error_code,
        finalized_at=now,
        expires_at=now + timedelta(hours=deps.config.ttl_hours),
        total_rows=sum(part.rows_written or 0 for part in done),
        partial_count=sum(part.partial_rows or 0 for part in done),
        failed_count=failed_count,
    )
    ended = uow.exports.end_job(job_id, ending)
    if ended and done:
        write_manifest(uow, deps.signing, job_id)
    if ended:
        deps.announce(uow, job_id, now)
    return ended
