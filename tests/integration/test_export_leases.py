"""Leases, claims and finalizing: the guarded updates several workers race on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from kbaudit.demo import demo_records
from kbaudit.domain import OrgId
from kbaudit.services.exports.parts import finalize_if_done
from kbaudit.services.exports.planning import plan_job
from kbaudit.services.exports.sweep import sweep
from kbaudit.services.ingest import ingest_records
from kbaudit.store.models import WrittenFile
from kbaudit.store.records import RecordRepository
from kbaudit.store.tables import records
from tests.conftest import Api, ManualClock
from tests.helpers import DEMO_END, seed_demo, start_export, view_export


class Holding:
    """A dispatcher that keeps the work: the test plays the workers."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, int]] = []
        self.plans: list[str] = []

    def plan_export(self, job_id: str) -> None:
        self.plans.append(job_id)

    def run_part(self, job_id: str, part_no: int) -> None:
        self.parts.append((job_id, part_no))


def written(part_no: int) -> WrittenFile:
    return WrittenFile(f"played/{part_no}", 10, 0, 0, 0, "0" * 64)


def test_a_part_is_claimed_once_and_a_dead_workers_part_is_taken_back(
    api: Api, clock: ManualClock
) -> None:
    key = api.key()
    seed_demo(api, key, 20)
    deps = api.container.exports
    held = Holding()
    deps.dispatcher = held
    job_id = start_export(api, key)["id"]
    plan_job(deps, job_id)
    until = clock.now + timedelta(seconds=deps.config.lease_seconds)
    with deps.store.writing() as uow:
        assert uow.exports.claim_part(job_id, 0, "worker-a", clock.now, until)
        assert not uow.exports.claim_part(job_id, 0, "worker-b", clock.now, until)
        uow.commit()
    assert sweep(deps).parts_recovered == 0  # the lease still runs
    clock.now = until + timedelta(seconds=1)
    held.parts.clear()
    assert sweep(deps).parts_recovered == 1
    assert held.parts == [(job_id, 0)]  # handed out again
    with deps.store.writing() as uow:
        assert not uow.exports.finish_part(job_id, 0, "worker-a", written(0), clock.now)
        assert uow.exports.claim_part(job_id, 0, "worker-b", clock.now, until + timedelta(hours=1))
        uow.commit()


def test_a_job_is_finalized_once(api: Api) -> None:
    key = api.key()
    seed_demo(api, key, 10)
    job = view_export(api, key, start_export(api, key)["id"])
    assert job["status"] == "succeeded"
    deps = api.container.exports
    with deps.store.writing() as uow:
        assert not finalize_if_done(deps, uow, job["id"], deps.clock() + timedelta(days=1))
        uow.commit()
    assert view_export(api, key, job["id"])["finalized_at"] == job["finalized_at"]


def test_two_workers_ending_the_last_two_parts_at_once_end_the_job_once(
    make_api: Callable[..., Api], clock: ManualClock
) -> None:
    """Both update their part, then look for parts still running before either commits: the
    one that looks second must see the other's commit, or the job waits for the sweep."""
    api = make_api(export_rows_per_file=10)
    key = api.key()
    seed_demo(api, key, 20)
    deps = api.container.exports
    deps.dispatcher = Holding()
    job_id = start_export(api, key)["id"]
    plan_job(deps, job_id)
    until = clock.now + timedelta(seconds=deps.config.lease_seconds)
    with deps.store.writing() as uow:
        assert len(uow.exports.parts(job_id)) == 2
        for part_no, owner in enumerate(("worker-a", "worker-b")):
            assert uow.exports.claim_part(job_id, part_no, owner, clock.now, until)
        uow.commit()
    a_updated, b_updated = threading.Event(), threading.Event()
    a_looked, b_looked = threading.Event(), threading.Event()
    ended: dict[str, bool] = {}

    def end_part(part_no: int, owner: str) -> None:
        with deps.store.writing() as uow:
            assert uow.exports.finish_part(job_id, part_no, owner, written(part_no), clock.now)
            if owner == "worker-a":
                a_updated.set()
                # SQLite's second writer waits for this one's commit: nothing to wait for then.
                b_updated.wait(timeout=1)
                ended[owner] = finalize_if_done(deps, uow, job_id, clock.now)
                a_looked.set()
                b_looked.wait(timeout=0.5)  # b looks now, before a commits, or waits for it
            else:
                b_updated.set()
                a_looked.wait(timeout=5)
                ended[owner] = finalize_if_done(deps, uow, job_id, clock.now)
                b_looked.set()
            uow.commit()

    a = threading.Thread(target=end_part, args=(0, "worker-a"))
    a.start()
    assert a_updated.wait(timeout=5)
    b = threading.Thread(target=end_part, args=(1, "worker-b"))
    b.start()
    a.join(timeout=30)
    b.join(timeout=30)
    assert ended == {"worker-a": False, "worker-b": True}
    job = view_export(api, key, job_id)
    assert (job["status"], job["total_rows"]) == ("succeeded", 20)


def test_a_plan_counts_exactly_the_records_under_its_snapshot_seq(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write still open when planning starts: the plan and its newest seq must agree on it
    (both with it, or both without). On PostgreSQL a snapshot taken before that write
    committed, with a seq read after, counted 20 records against a seq that held 25."""
    key = api.key()
    seed_demo(api, key, 20)
    deps = api.container.exports
    deps.dispatcher = Holding()
    job_id = start_export(api, key)["id"]
    written, go_on = threading.Event(), threading.Event()
    insert = RecordRepository.insert

    def insert_then_wait(repository: Any, *args: Any) -> None:
        insert(repository, *args)
        written.set()
        go_on.wait(timeout=10)

    monkeypatch.setattr(RecordRepository, "insert", insert_then_wait)
    late = list(demo_records(5, end=DEMO_END, seed=8))
    writer = threading.Thread(target=ingest_records, args=(deps.store, deps.clock, OrgId(1), late))
    writer.start()
    assert written.wait(timeout=10)
    planner = threading.Thread(target=plan_job, args=(deps, job_id))
    planner.start()
    time.sleep(0.5)  # the plan is under way (on PostgreSQL, waiting for the write)
    go_on.set()
    writer.join(timeout=30)
    planner.join(timeout=30)
    with deps.store.reading() as uow:
        job = uow.exports.job(job_id)
        assert job is not None
        assert job.snapshot_seq is not None
        planned = sum(part.planned_rows for part in uow.exports.parts(job_id))
        under = select(func.count()).where(records.c.seq <= job.snapshot_seq)
        assert planned == uow.connection.execute(under).scalar_one()
    assert planned in (20, 25)


def test_a_lost_plan_message_is_sent_again(api: Api, clock: ManualClock) -> None:
    key = api.key()
    deps = api.container.exports
    held = Holding()
    deps.dispatcher = held
    job_id = start_export(api, key)["id"]
    assert sweep(deps).jobs_replanned == 0
    clock.now += timedelta(seconds=deps.config.lease_seconds + 1)
    assert sweep(deps).jobs_replanned == 1
    assert held.plans == [job_id, job_id]
