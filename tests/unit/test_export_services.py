"""The export services over the shipped test doubles (blobs in memory, an ephemeral keyring)
and a synchronous dispatcher: no server, no queue, no disk but one SQLite file. The same
behaviour runs against the real parts in tests/integration/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from kbaudit.blobs.memory import MemoryBlobStore
from kbaudit.crypto.envelope import LocalKeyManager
from kbaudit.crypto.keyring import Keyring
from kbaudit.crypto.signing import SigningKeys
from kbaudit.domain import SCOPES, Caller, JobStatus, KeyId, OrgId, RecordIn
from kbaudit.filters import RecordFilters
from kbaudit.services.exports.deps import ExportConfig, ExportDeps
from kbaudit.services.exports.download import open_download
from kbaudit.services.exports.jobs import ExportSpec, create_export, get_export
from kbaudit.services.exports.parts import run_part
from kbaudit.services.exports.planning import plan_job
from kbaudit.services.exports.sweep import sweep
from kbaudit.services.exports.tokens import DownloadTokens
from kbaudit.services.ingest import ingest_records
from kbaudit.services.keys import create_key
from kbaudit.store.engine import create_store_engine
from kbaudit.store.migrate import migrate
from kbaudit.store.models import ExportJob
from kbaudit.store.unit_of_work import Store, UnitOfWork
from tests.helpers import record

NOW = datetime(2026, 6, 1, tzinfo=UTC)
WINDOW = RecordFilters.window(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))


@dataclass
class RunAtOnce:
    """The dispatcher, synchronous: a plan and each part run in the caller."""

    deps: ExportDeps | None = None

    def plan_export(self, job_id: str) -> None:
        assert self.deps is not None
        plan_job(self.deps, job_id)

    def run_part(self, job_id: str, part_no: int) -> None:
        assert self.deps is not None
        run_part(self.deps, job_id, part_no)


@dataclass
class Followed:
    """A follower of the exports: what it was told, as (job id, status)."""

    told: list[tuple[str, JobStatus]] = field(default_factory=list)

    def __call__(self, uow: UnitOfWork, job: ExportJob, now: datetime) -> None:
        self.told.append((job.id, job.status))


@pytest.fixture
def deps(tmp_path: Path) -> Iterator[ExportDeps]:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'kbaudit.db'}")
    migrate(engine, tmp_path)
    store = Store(engine)
    keyring = Keyring.ephemeral()
    dispatcher = RunAtOnce()
    built = ExportDeps(
        store=store,
        blobs=MemoryBlobStore(),
        keys=LocalKeyManager(keyring),
        signing=SigningKeys(keyring),
        tokens=DownloadTokens(keyring, 300, lambda: NOW),
        dispatcher=dispatcher,
        clock=lambda: NOW,
        config=ExportConfig(rows_per_file=4, retry_backoff_seconds=0),
        followers=[Followed()],
    )
    dispatcher.deps = built
    yield built
    store.close()


def caller_with_records(deps: ExportDeps, count: int) -> Caller:
    create_key(deps.store, deps.clock, "acme", SCOPES)
    records = [msgspec.convert(record(), RecordIn) for _ in range(count)]
    ingest_records(deps.store, deps.clock, OrgId(1), records)
    return Caller(OrgId(1), KeyId("k"), frozenset(SCOPES))


def test_an_export_runs_in_parts_and_downloads_from_memory(deps: ExportDeps) -> None:
    caller = caller_with_records(deps, 10)
    job = create_export(deps, caller, ExportSpec("ndjson", WINDOW)).job
    done = get_export(deps, caller, job["id"])
    assert (done.job["status"], done.job["total_rows"], done.parts_total) == ("succeeded", 10, 3)
    lines = []
    for file in done.files[:3]:
        assert file.download_token is not None
        download = open_download(deps, caller, job["id"], file.name, file.download_token)
        lines += b"".join(download.chunks).splitlines()
    assert len(lines) == 10


def test_followers_hear_that_a_job_ended_and_then_expired(deps: ExportDeps) -> None:
    caller = caller_with_records(deps, 2)
    job_id = create_export(deps, caller, ExportSpec("csv", WINDOW)).job["id"]
    [followed] = deps.followers
    assert isinstance(followed, Followed)
    assert followed.told == [(job_id, JobStatus.SUCCEEDED)]
    later = replace(deps, clock=lambda: NOW + timedelta(days=8))
    assert sweep(later).jobs_expired == 1
    assert followed.told == [(job_id, JobStatus.SUCCEEDED), (job_id, JobStatus.EXPIRED)]
    assert deps.blobs.keys("exports") == []
