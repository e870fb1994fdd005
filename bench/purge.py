"""Purge throughput with and without archive, and the query route's p99 while it runs.

    .venv/bin/python -m bench.purge [--source bench/out/ingest-import] [--seconds 20]
    .venv/bin/python -m bench.purge --postgres bench_load1000000 --now 2026-09-29T12:00:00Z

Copies a loaded data folder (organization ``bench``, bench.ingest leaves one), moves the
purge's clock two years ahead so that every record has expired, and purges with a 90-day
policy: once plainly, once with archive before delete (each on its own copy). While the
first purge runs, a ``kbaudit serve`` on the same database answers queries from one client;
its p99 is compared with the p99 measured at rest just before, on the same server.

With ``--postgres DB`` the copies are databases cloned from ``DB`` (``bench.scaleout`` loads
one) on the servers ``bench.scaleout`` starts, with blobs in SeaweedFS; ``--now`` sets the
purge's clock, so that a chosen share of the records has expired. There the plain purge drops
wholly expired months and deletes the rest in batches; the archiving purge works in batches.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import time
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import OUT, Server, kbaudit, percentile
from bench.query import ROUTE, as_params, mixes
from bench.scaleout import kbaudit_env, services
from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.demo import DemoWorld
from kbaudit.domain import Caller, KeyId
from kbaudit.services.retention import purge, update_policy
from kbaudit.workers.consumer import UPKEEP_NICENESS, lower_thread_priority

FUTURE = datetime(2028, 12, 1, tzinfo=UTC)


def copy_of(source: Path, name: str, postgres: str | None) -> dict[str, str]:
    """The KBAUDIT_* settings of a fresh copy of the loaded records."""
    target = OUT / name
    shutil.rmtree(target, ignore_errors=True)
    if postgres is None:
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("blobs", "queue.db*"))
        return {"KBAUDIT_DATA_DIR": str(target)}
    base, database = services(), f"bench_{name.replace('-', '_')}"
    admin = create_engine(base["KBAUDIT_TEST_PG_ADMIN_URL"], isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {database} TEMPLATE {postgres}"))
    admin.dispose()
    url = make_url(base["KBAUDIT_TEST_PG_ADMIN_URL"]).set(database=database)
    return kbaudit_env(base, name, url.render_as_string(hide_password=False))


def purge_rate(
    copy: dict[str, str],
    now: datetime,
    archive: bool,
    pacing: dict[str, Any],
    during: Event | None = None,
) -> tuple[float, int]:
    # Settings read the environment, as the server does: the copy's settings are put there.
    os.environ.update(copy)
    container = build_container(Settings(queue_url="inline"), clock=lambda: now)
    with container.store.reading() as uow:
        org = uow.keys.organization_by_name("bench")
    assert org is not None
    caller = Caller(org.id, KeyId("bench"), frozenset({"kb_audit:admin"}))
    update_policy(
        container.store,
        container.clock,
        caller,
        {"retention_days": 90, "archive_before_delete": archive},
    )
    if during:
        during.set()
    started = time.perf_counter()
    deleted = purge(container.store, container.clock, container.archiver, **pacing)
    elapsed = time.perf_counter() - started
    container.close()
    return deleted / elapsed, deleted


def purge_in_child(
    results: Queue[tuple[float, int]],
    started: Event,
    finished: Event,
    copy: dict[str, str],
    now: datetime,
    pacing: dict[str, Any],
) -> None:
    lower_thread_priority(UPKEEP_NICENESS)  # as the server's upkeep thread does
    results.put(purge_rate(copy, now, False, pacing, during=started))
    finished.set()


def query_latencies(url: str, key: str, stop: Event, seconds: float) -> list[float]:
    world = DemoWorld.build(random.Random(7))
    # The purge moves the window; ask about the last month before the records' end.
    params = [as_params(mix) for mix in mixes(world).values()]
    samples = []
    deadline = time.perf_counter() + seconds
    with httpx2.Client(headers={"x-api-key": key}, timeout=60) as client:
        while not stop.is_set() and time.perf_counter() < deadline:
            started = time.perf_counter()
            client.get(url, params=random.choice(params))
            samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=OUT / "ingest-import")
    parser.add_argument("--postgres", help="a loaded PostgreSQL database to clone instead")
    parser.add_argument("--now", type=datetime.fromisoformat, default=FUTURE)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--batch-size", type=int, help="default: the purge's own")
    parser.add_argument(
        "--pause", type=float, help="seconds between batches; default the purge's own"
    )
    parser.add_argument("--no-archive", action="store_true", help="skip the archiving purge")
    args = parser.parse_args()
    given = {"batch_size": args.batch_size, "pause_seconds": args.pause}
    pacing = {name: value for name, value in given.items() if value is not None}
    os.environ["KBAUDIT_LOG_LEVEL"] = "warning"
    plain = copy_of(args.source, "purge-plain", args.postgres)
    archived = None if args.no_archive else copy_of(args.source, "purge-archive", args.postgres)
    env = {**os.environ, **plain}
    key = kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read")
    server = Server(env)
    try:
        url = server.url + ROUTE
        never = multiprocessing.Event()
        query_latencies(url, key, never, 5)  # warms the server's caches, unmeasured
        rest = query_latencies(url, key, never, args.seconds)
        # The purge runs in a process of its own, as it would in the server's worker: in a
        # thread of this one, it would hold back the measuring client at every GIL switch.
        spawn = multiprocessing.get_context("spawn")
        started, finished, results = spawn.Event(), spawn.Event(), spawn.Queue()
        child = spawn.Process(
            target=purge_in_child,
            args=(results, started, finished, plain, args.now, pacing),
        )
        child.start()
        started.wait()
        busy = query_latencies(url, key, finished, 3600)
        rate, deleted = results.get()
        child.join()
    finally:
        server.stop()
    print(f"purge benchmark: {deleted:,} expired records, pacing {pacing or 'the default'}")
    print(f"  purge, no archive          {rate:>9,.0f} records/s")
    if archived is not None:
        archived_rate, archived_deleted = purge_rate(archived, args.now, True, pacing)
        print(
            f"  purge, archive first       {archived_rate:>9,.0f} records/s  "
            f"({archived_deleted:,} records, {archived_rate / rate:.0%} of plain)"
        )
    p99_rest, p99_busy = percentile(rest, 0.99), percentile(busy, 0.99)
    print(
        f"  query at rest: p50 {percentile(rest, 0.5) * 1000:.1f} ms, "
        f"p99 {p99_rest * 1000:.1f} ms ({len(rest)} requests); during the purge: "
        f"p50 {percentile(busy, 0.5) * 1000:.1f} ms, p99 {p99_busy * 1000:.1f} ms "
        f"({len(busy)} requests); p99 {p99_busy / p99_rest:.1f}x"
    )


if __name__ == "__main__":
    main()
