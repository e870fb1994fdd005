"""What the export services need, handed over explicitly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from kbaudit.blobs import BlobStore
from kbaudit.crypto.envelope import KeyManager
from kbaudit.crypto.signing import SigningKeys
from kbaudit.services.clock import Clock
from kbaudit.services.exports.tokens import DownloadTokens
from kbaudit.store.models import ExportJob
from kbaudit.store.unit_of_work import Store, UnitOfWork


class Dispatcher(Protocol):
    """Hands work to the workers; carries ids only, the database rows are the truth."""

    def plan_export(self, job_id: str) -> None: ...

    def run_part(self, job_id: str, part_no: int) -> None: ...


class JobFollower(Protocol):
    """Told that a job ended or expired, inside the transaction that made it so: what it
    writes commits with the change, or not at all. The exports never know who follows them
    (delivery does; the container hands it over)."""

    def __call__(self, uow: UnitOfWork, job: ExportJob, now: datetime) -> None: ...


@dataclass(frozen=True)
class ExportConfig:
    rows_per_file: int = 100_000
    ttl_hours: int = 168
    max_active_per_org: int = 1
    max_window_days: int = 366
    lease_seconds: int = 60
    part_attempts: int = 3
    retry_backoff_seconds: float = 1.0


@dataclass
class ExportDeps:
    store: Store
    blobs: BlobStore
    keys: KeyManager
    signing: SigningKeys
    tokens: DownloadTokens
    dispatcher: Dispatcher
    clock: Clock
    config: ExportConfig
    followers: Sequence[JobFollower] = field(default_factory=tuple)

    def announce(self, uow: UnitOfWork, job_id: str, now: datetime) -> None:
        """Tell the followers how the job stands now (it has just ended or expired)."""
        job = uow.exports.job(job_id)
        assert job is not None
        for follow in self.followers:
            follow(uow, job, now)
