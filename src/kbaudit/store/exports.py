"""Export jobs and their parts. Every state change is a guarded UPDATE whose row count says
whether this caller won it: that is what makes claims, leases and finalizing safe when
several workers race."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, insert, literal, select, tuple_, update

from kbaudit.domain import JobStatus, OrgId
from kbaudit.store.models import ExportJob, ExportPart, JobEnding, PartStatus, WrittenFile
from kbaudit.store.tables import export_jobs, export_parts

ACTIVE = tuple(status for status in JobStatus if status.active)
ENDED = tuple(status for status in JobStatus if status.ended)


class ExportRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    # -- jobs -----------------------------------------------------------------------------

    def add_job(self, job: ExportJob) -> None:
        self._connection.execute(insert(export_jobs).values(**job.as_dict()))

    def job(self, job_id: str, org_id: OrgId | None = None) -> ExportJob | None:
        query = select(export_jobs).where(export_jobs.c.id == job_id)
        if org_id is not None:
            query = query.where(export_jobs.c.org_id == org_id)
        return self._one_job(query)

    def job_by_idempotency_key(self, org_id: OrgId, key: str) -> ExportJob | None:
        j = export_jobs.c
        return self._one_job(
            select(export_jobs).where(j.org_id == org_id, j.idempotency_key == key)
        )

    def _one_job(self, query: Select[Any]) -> ExportJob | None:
        row = self._connection.execute(query).one_or_none()
        return None if row is None else ExportJob.of(row)

    def _jobs(self, query: Select[Any]) -> list[ExportJob]:
        return [ExportJob.of(row) for row in self._connection.execute(query)]

    def forget_idempotency_key(self, job_id: str) -> None:
        self._update_job(job_id, idempotency_key=None)

    def active_count(self, org_id: OrgId) -> int:
        j = export_jobs.c
        query = select(func.count()).where(j.org_id == org_id, j.status.in_(ACTIVE))
        return int(self._connection.execute(query).scalar_one())

    def jobs_page(
        self,
        org_id: OrgId,
        status: JobStatus | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[ExportJob]:
        j = export_jobs.c
        query = (
            select(export_jobs)
            .where(j.org_id == org_id)
            .order_by(j.created_at.desc(), j.id.desc())
            .limit(limit)
        )
        if status:
            query = query.where(j.status == status)
        if after is not None:
            key = tuple_(literal(after[0], j.created_at.type), literal(after[1], j.id.type))
            query = query.where(tuple_(j.created_at, j.id) < key)
        return self._jobs(query)

    def start_job(self, job_id: str, now: datetime, snapshot_seq: int, log_size: int) -> bool:
        return self._update_job(
            job_id,
            _when=(JobStatus.PENDING,),
            status=JobStatus.RUNNING,
            started_at=now,
            snapshot_seq=snapshot_seq,
            log_size=log_size,
        )

    def keep_manifest(self, job_id: str, manifest: bytes, signature: bytes) -> None:
        self._update_job(job_id, manifest=manifest, manifest_signature=signature)

    def lock_job(self, job_id: str) -> None:
        """Hold the job's row until the transaction ends. Two workers ending its last two parts
        at once would each see the other's part still running (neither has committed), and
        neither would end the job: locked, the second waits and then sees the first's commit.
        SQLite's writers take turns already; it has no row locks to take."""
        query = select(export_jobs.c.id).where(export_jobs.c.id == job_id).with_for_update()
        self._connection.execute(query)

    def end_job(self, job_id: str, ending: JobEnding) -> bool:
        """Finalize a running job; only the first caller wins."""
        return self._update_job(job_id, _when=(JobStatus.RUNNING,), **asdict(ending))

    def expire_job(self, job_id: str) -> bool:
        return self._update_job(job_id, _when=ENDED, status=JobStatus.EXPIRED, wrapped_keyset=None)

    def jobs_in(self, statuses: Sequence[JobStatus]) -> list[ExportJob]:
        return self._jobs(select(export_jobs).where(export_jobs.c.status.in_(statuses)))

    def jobs_expiring(self, now: datetime) -> list[ExportJob]:
        j = export_jobs.c
        return self._jobs(select(export_jobs).where(j.status.in_(ENDED), j.expires_at <= now))

    def jobs_with_files_to_delete(self) -> list[ExportJob]:
        """Expired jobs whose files are not known to be deleted yet."""
        j = export_jobs.c
        query = select(export_jobs).where(
            j.status == JobStatus.EXPIRED, j.files_deleted_at.is_(None)
        )
        return self._jobs(query)

    def files_deleted(self, job_id: str, now: datetime) -> None:
        self._update_job(job_id, files_deleted_at=now)

    def _update_job(self, job_id: str, _when: Sequence[str] = (), **values: Any) -> bool:
        query = update(export_jobs).where(export_jobs.c.id == job_id).values(**values)
        if _when:
            query = query.where(export_jobs.c.status.in_(_when))
        return self._connection.execute(query).rowcount == 1

    # -- parts ----------------------------------------------------------------------------

    def add_parts(self, parts: Sequence[ExportPart]) -> None:
        self._connection.execute(insert(export_parts), [part.as_dict() for part in parts])

    def parts(self, job_id: str) -> list[ExportPart]:
        p = export_parts.c
        query = select(export_parts).where(p.job_id == job_id).order_by(p.part_no)
        return [ExportPart.of(row) for row in self._connection.execute(query)]

    def claim_part(
        self, job_id: str, part_no: int, owner: str, now: datetime, until: datetime
    ) -> bool:
        """Take a pending part, or a running one whose lease has run out."""
        p = export_parts.c
        claimable = (p.status == PartStatus.PENDING) | (
            (p.status == PartStatus.RUNNING) & (p.lease_expires_at < now)
        )
        query = (
            update(export_parts)
            .where(p.job_id == job_id, p.part_no == part_no, claimable)
            .values(
                status=PartStatus.RUNNING,
                lease_owner=owner,
                lease_expires_at=until,
                attempts=p.attempts + 1,
                updated_at=now,
            )
        )
        return self._connection.execute(query).rowcount == 1

    def extend_lease(
        self, job_id: str, part_no: int, owner: str, until: datetime, rows: int, now: datetime
    ) -> bool:
        """A heartbeat: the lease runs to ``until``, with ``rows`` written so far."""
        return self._update_held_part(
            job_id, part_no, owner, lease_expires_at=until, rows_written=rows, updated_at=now
        )

    def finish_part(
        self, job_id: str, part_no: int, owner: str, written: WrittenFile, now: datetime
    ) -> bool:
        return self._update_held_part(
            job_id,
            part_no,
            owner,
            status=PartStatus.DONE,
            lease_owner=None,
            blob_key=written.blob_key,
            rows_written=written.rows,
            partial_rows=written.partial_rows,
            plaintext_bytes=written.plaintext_bytes,
            ciphertext_bytes=written.ciphertext_bytes,
            sha256_plaintext=written.sha256,
            delivered_bytes=written.delivered_bytes,
            sha256_delivered=written.sha256_delivered,
            error=None,
            updated_at=now,
        )

    def release_part(
        self, job_id: str, part_no: int, owner: str, error: str, now: datetime, *, final: bool
    ) -> bool:
        """Give up an attempt: the part waits for another, or has ``failed`` when ``final``."""
        return self._update_held_part(
            job_id,
            part_no,
            owner,
            status=PartStatus.FAILED if final else PartStatus.PENDING,
            lease_owner=None,
            rows_written=None,
            error=error,
            updated_at=now,
        )

    def _update_held_part(self, job_id: str, part_no: int, owner: str, **values: Any) -> bool:
        """Change a part only while ``owner`` still holds its lease."""
        p = export_parts.c
        query = (
            update(export_parts)
            .where(
                p.job_id == job_id,
                p.part_no == part_no,
                p.status == PartStatus.RUNNING,
                p.lease_owner == owner,
            )
            .values(**values)
        )
        return self._connection.execute(query).rowcount == 1

    def release_stale_parts(self, now: datetime, max_attempts: int) -> list[ExportPart]:
        """Parts whose worker stopped heartbeating: back to pending, or failed when out of
        attempts. Returns the parts that changed."""
        p = export_parts.c
        stale = [
            ExportPart.of(row)
            for row in self._connection.execute(
                select(export_parts).where(p.status == PartStatus.RUNNING, p.lease_expires_at < now)
            )
        ]
        for part in stale:
            out_of_attempts = part.attempts >= max_attempts
            self._connection.execute(
                update(export_parts)
                .where(
                    p.job_id == part.job_id,
                    p.part_no == part.part_no,
                    p.status == PartStatus.RUNNING,
                    p.lease_expires_at < now,
                )
                .values(
                    status=PartStatus.FAILED if out_of_attempts else PartStatus.PENDING,
                    lease_owner=None,
                    rows_written=None,
                    error="worker_lost" if out_of_attempts else part.error,
                    updated_at=now,
                )
            )
        return stale

    def parts_in(self, status: PartStatus, updated_before: datetime) -> list[ExportPart]:
        p = export_parts.c
        query = select(export_parts).where(p.status == status, p.updated_at < updated_before)
        return [ExportPart.of(row) for row in self._connection.execute(query)]
