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
import os
import random
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

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
    copy: dict[str, str], now: datetime, archive: bool, during: threading.Event | None = None
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
    deleted = purge(container.store, container.clock, container.archiver)
    elapsed = time.perf_counter() - started
    container.close()
    return deleted / elapsed, deleted


def query_latencies(url: str, key: str, stop: threading.Event, seconds: float) -> list[float]:
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
    args = parser.parse_args()
    os.environ["KBAUDIT_LOG_LEVEL"] = "warning"
    plain = copy_of(args.source, "purge-plain", args.postgres)
    archived = copy_of(args.source, "purge-archive", args.postgres)
    env = {**os.environ, **plain}
    key = kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read")
    server = Server(env)
    try:
        url = server.url + ROUTE
        rest = query_latencies(url, key, threading.Event(), args.seconds)
        started, finished = threading.Event(), threading.Event()
        result: list[tuple[float, int]] = []

        def run() -> None:
            result.append(purge_rate(plain, args.now, archive=False, during=started))
            finished.set()

        worker = threading.Thread(target=run)
        worker.start()
        started.wait()
        busy = query_latencies(url, key, finished, 3600)
        worker.join()
    finally:
        server.stop()
    rate, deleted = result[0]
    archived_rate, archived_deleted = purge_rate(archived, args.now, archive=True)
    print(f"purge benchmark: {deleted:,} expired records")
    print(f"  purge, no archive          {rate:>9,.0f} records/s")
    print(
        f"  purge, archive first       {archived_rate:>9,.0f} records/s  "
        f"({archived_deleted:,} records, {archived_rate / rate:.0%} of plain)"
    )
    p99_rest, p99_busy = percentile(rest, 0.99), percentile(busy, 0.99)
    print(
        f"  query p99 at rest {p99_rest * 1000:.1f} ms ({len(rest)} requests), "
        f"during the purge {p99_busy * 1000:.1f} ms ({len(busy)} requests): "
        f"{p99_busy / p99_rest:.1f}x"
    )


if __name__ == "__main__":
    main()
