"""The rows of export jobs, export parts and retention policies, typed: what the repositories
hand to the services instead of SQLAlchemy rows, and take from them to write."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Self

from kbaudit.domain import ExportFormat, JobStatus, OrgId


class PartStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def open(self) -> bool:
        """Waiting for a worker or at work: the job cannot end yet."""
        return self in (PartStatus.PENDING, PartStatus.RUNNING)


class _FromRow:
    __slots__ = ()

    @classmethod
    def of(cls, row: Any) -> Self:
        """The model of a row that has at least the model's columns."""
        mapping = row._mapping
        return cls(**{f.name: mapping[f.name] for f in fields(cls)})  # type: ignore[arg-type]

    def as_dict(self, without: Collection[str] = ()) -> dict[str, Any]:
        """The model as its row's columns, but those named in ``without``."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)  # type: ignore[arg-type]
            if f.name not in without
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportJob(_FromRow):
    """A job; a new one (``pending``) has none of what running and ending it sets."""

    id: str
    org_id: OrgId
    key_id: str
    status: JobStatus
    export_format: ExportFormat
    window_start: datetime
    window_end: datetime
    filters: dict[str, Any]
    created_at: datetime
    rows_per_file: int
    idempotency_key: str | None
    request_hash: str
    kek_version: int
    wrapped_keyset: bytes | None
    recipients: list[str] | None
    destination: str | None
    # Set by the plan:
    started_at: datetime | None = None
    snapshot_seq: int | None = None
    log_size: int | None = None
    # Set at the end:
    finalized_at: datetime | None = None
    expires_at: datetime | None = None
    manifest: bytes | None = None
    manifest_signature: bytes | None = None
    total_rows: int | None = None
    partial_count: int | None = None
    failed_count: int | None = None
    error_code: str | None = None
    # Set once expired:
    files_deleted_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", JobStatus(self.status))


@dataclass(frozen=True, slots=True)
class JobEnding:
    """How a job ended, as its last part's worker found it."""

    status: JobStatus
    error_code: str | None
    finalized_at: datetime
    expires_at: datetime
    total_rows: int
    partial_count: int
    failed_count: int


@dataclass(frozen=True, slots=True)
class PartFile:
    """What a done part wrote. A recipient receives the plaintext, or an age file of it."""

    blob_key: str
    rows: int
    partial_rows: int
    plaintext_bytes: int
    sha256_plaintext: str
    delivered_bytes: int
    sha256_delivered: str


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """What an attempt at a part wrote, as it reports it."""

    blob_key: str
    rows: int
    partial_rows: int
    plaintext_bytes: int
    ciphertext_bytes: int
    sha256: str
    # What the recipient receives, when it is not the plaintext: the age file.
    delivered_bytes: int | None = None
    sha256_delivered: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportPart(_FromRow):
    """One planned file: from its lower key (inclusive) to the next part's (exclusive). A
    planned part has none of what its attempts set."""

    job_id: str
    part_no: int
    lo_created_at: datetime | None
    lo_id: str | None
    hi_created_at: datetime | None
    hi_id: str | None
    planned_rows: int
    file_name: str
    updated_at: datetime
    status: PartStatus = PartStatus.PENDING
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    blob_key: str | None = None
    rows_written: int | None = None
    partial_rows: int | None = None
    plaintext_bytes: int | None = None
    ciphertext_bytes: int | None = None
    sha256_plaintext: str | None = None
    delivered_bytes: int | None = None
    sha256_delivered: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", PartStatus(self.status))

    @property
    def lower(self) -> tuple[datetime, str] | None:
        """The key the part starts at (inclusive); None for the window's start."""
        if self.lo_created_at is None or self.lo_id is None:
            return None
        return self.lo_created_at, self.lo_id

    @property
    def upper(self) -> tuple[datetime, str] | None:
        """The key the next part starts at (exclusive); None for the window's end."""
        if self.hi_created_at is None or self.hi_id is None:
            return None
        return self.hi_created_at, self.hi_id

    @property
    def file(self) -> PartFile:
        """The file of a done part; other parts have none (``ValueError``)."""
        if self.status is not PartStatus.DONE or self.blob_key is None:
            raise ValueError(f"part {self.part_no} of export {self.job_id} has no file")
        plaintext_bytes, sha256_plaintext = self.plaintext_bytes or 0, self.sha256_plaintext or ""
        return PartFile(
            self.blob_key,
            self.rows_written or 0,
            self.partial_rows or 0,
            plaintext_bytes,
            sha256_plaintext,
            plaintext_bytes if self.delivered_bytes is None else self.delivered_bytes,
            self.sha256_delivered or sha256_plaintext,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPolicy(_FromRow):
    id: str
    org_id: OrgId
    retention_days: int
    legal_hold_enabled: bool
    archive_before_delete: bool
    policy_version: int
    created_at: datetime
    updated_at: datetime
    legal_hold_reason: str | None = None
    legal_hold_set_by: str | None = None
    legal_hold_set_at: datetime | None = None
    archive_destination: str | None = None


DEFAULT_RETENTION_DAYS = 365


def purge_cutoff(policy: RetentionPolicy | None, now: datetime) -> datetime:
    """Records created before this instant are the purge's to delete (held or not)."""
    days = policy.retention_days if policy else DEFAULT_RETENTION_DAYS
    return now - timedelta(days=days)


@dataclass(frozen=True, slots=True)
class Webhook(_FromRow):
    id: str
    org_id: OrgId
    url: str
    events: list[str]
    description: str | None
    kek_version: int
    wrapped_secret: bytes
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Destination(_FromRow):
    org_id: OrgId
    name: str
    bucket: str
    prefix: str
    region: str | None
    endpoint: str | None
    access_key_id: str
    kek_version: int
    wrapped_secret: bytes
    created_at: datetime
    updated_at: datetime


class OutboxKind(StrEnum):
    WEBHOOK = "webhook"  # target: the webhook's id
    DESTINATION = "destination"  # target: the destination's name


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem(_FromRow):
    """One thing to send: a webhook event, or an export's files for a destination."""

    id: str
    org_id: OrgId
    kind: OutboxKind
    target: str
    export_id: str
    event_type: str
    body: bytes | None
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    last_status_code: int | None = None
    last_error: str | None = None
    ended_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OutboxKind(self.kind))
        object.__setattr__(self, "status", OutboxStatus(self.status))


@dataclass(frozen=True, slots=True)
class Archive(_FromRow):
    """Records written to an archive before a purge: what it holds and how to open it."""

    id: str
    org_id: OrgId
    destination: str
    created_at: datetime
    record_count: int
    kek_version: int
    wrapped_keyset: bytes
    files: dict[str, Any]


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month in UTC: records are kept, and on PostgreSQL stored, month by month."""

    year: int
    month: int

    @classmethod
    def of(cls, instant: datetime) -> Month:
        instant = instant.astimezone(UTC)
        return cls(instant.year, instant.month)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        after = Month(self.year + self.month // 12, self.month % 12 + 1)
        return after.start

    def table(self, base: str) -> str:
        return f"{base}_p{self.year:04d}_{self.month:02d}"
