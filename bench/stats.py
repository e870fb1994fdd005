"""The statistics route over one organization's million records, against a plain script.

    .venv/bin/python -m bench.stats [--records 1000000] [--data-dir bench/out/export-1000000]

Drives ``kbaudit serve`` with ``wrk`` over the charts' typical questions (30 days by day,
grouped each way; one knowledge base; the last day by hour), one client and then 16. The
baseline is what a user could write instead over the flat single-table copy of the same
records (``bench/plain.py``): one GROUP BY for the counts, then every duration of the window
read in order to pick the p50 and p95 of each day and status.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2

from bench import plain
from bench.common import END, OUT, Server, dataset
from bench.query import prepare, wrk
from kbaudit.demo import DemoWorld

ROUTE = "/v1/knowledge-base/audit/stats"


def mixes(world: DemoWorld) -> dict[str, dict[str, Any]]:
    month, day = END - timedelta(days=30), END - timedelta(days=1)
    return {
        "30 days by day, by status": {"start": month},
        "30 days by day, by knowledge base": {"start": month, "group_by": "kb_id"},
        "30 days by day, by agent": {"start": month, "group_by": "agent_id"},
        "30 days, one kb, by status": {"start": month, "kb_ids": [str(world.kb_ids[2])]},
        "30 days by hour, by status": {"start": month, "interval": "hour"},
        "last day by hour, by status": {"start": day},
    }


def path_of(mix: dict[str, Any]) -> str:
    params = {**mix, "start": mix["start"].isoformat(), "end": END.isoformat()}
    return f"{ROUTE}?{urlencode(params, doseq=True)}"


def plain_stats(flat: Path) -> float:
    """Seconds for the plain script's answer to the first mix."""
    window = ((END - timedelta(days=30)).isoformat(), END.isoformat())
    window = (plain.utc_text(window[0]) or "", plain.utc_text(window[1]) or "")
    started = time.perf_counter()
    db = sqlite3.connect(flat)
    counts = db.execute(
        "SELECT substr(created_at, 1, 10), retrieval_status, count(*) FROM flat "
        "WHERE created_at >= ? AND created_at < ? GROUP BY 1, 2",
        window,
    ).fetchall()
    durations: dict[tuple[str, str], list[int]] = {}
    for day, status, duration in db.execute(
        "SELECT substr(created_at, 1, 10), retrieval_status, duration_ms FROM flat "
        "WHERE created_at >= ? AND created_at < ? AND duration_ms IS NOT NULL "
        "ORDER BY 1, 2, 3",
        window,
    ):
        durations.setdefault((day, status), []).append(duration)
    answer = {
        group: (values[len(values) // 2], values[int(len(values) * 0.95)])
        for group, values in durations.items()
    }
    db.close()
    assert counts
    assert answer
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--data-dir", type=Path, help="a data folder loaded with the data set")
    args = parser.parse_args()
    data_dir = args.data_dir or OUT / f"query-{args.records}"
    if args.data_dir:
        (data_dir / "loaded").touch()
    env, key = prepare(args.records, data_dir)
    flat = OUT / f"flat-{args.records}.db"
    plain.flat_copy(dataset(args.records), flat)
    world = DemoWorld.build(random.Random(7))
    paths = {name: path_of(mix) for name, mix in mixes(world).items()}
    print(f"stats benchmark: {args.records:,} records in one organization, wrk")
    server = Server(env)
    try:
        started = time.perf_counter()
        first = httpx2.get(
            server.url + paths["30 days by day, by status"], headers={"x-api-key": key}, timeout=600
        )
        first.raise_for_status()
        print(f"  first call (counts every stale hour): {time.perf_counter() - started:.2f} s")
        measure(server.url, key, paths, args.clients, args.seconds)
    finally:
        server.stop()
    runs = [plain_stats(flat) for _ in range(3)]
    print(
        f"  baseline, plain script over the flat table (30 days by day, by status): "
        f"median {statistics.median(runs) * 1000:.0f} ms of {len(runs)} runs"
    )


def measure(url: str, key: str, paths: dict[str, str], clients: int, seconds: float) -> None:
    for name, path in paths.items():
        one = wrk(url, key, [path], 1, seconds / 3)
        print(f"    {name:36} one client: p50 {one['p50']:6.1f} ms  p99 {one['p99']:6.1f} ms")
    figures = wrk(url, key, list(paths.values()), clients, seconds)
    print(
        f"    all six, {clients} clients: {figures['rps']:,.0f} requests/s, "
        f"p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms"
    )


if __name__ == "__main__":
    main()
