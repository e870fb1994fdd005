"""Query latency and throughput over one organization's million records.

    .venv/bin/python -m bench.query [--records 1000000] [--requests 100] [--seconds 15]

Loads the data set with ``kbaudit import`` into its own data folder (once; reused after), then
measures p50/p99 of the query route for typical filter mixes, one request at a time, and
requests/s with 16 concurrent clients. The baseline is the same page read straight from the
store in-process, without HTTP, auth or the access log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2

from bench.common import END, OUT, Server, dataset, kbaudit, percentile
from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.demo import DemoWorld
from kbaudit.domain import RecordFilters
from kbaudit.services.query import MAX_LIMIT

ROUTE = "/v1/knowledge-base/audit/retrievals"


def mixes(world: DemoWorld) -> dict[str, dict[str, Any]]:
    """Typical questions an auditor asks, each as query parameters."""
    day, month = END - timedelta(days=1), END - timedelta(days=30)
    return {
        "last day, no filter, 50": {"start": day, "limit": 50},
        "30 days, blocked+error, 50": {
            "start": month,
            "statuses": ["blocked", "error"],
            "limit": 50,
        },
        "7 days, one actor, 50": {
            "start": END - timedelta(days=7),
            "actor_user_id": str(world.actor_ids[3]),
            "limit": 50,
        },
        "30 days, one session, 50": {
            "start": month,
            "session_id": str(world.session_ids[5]),
            "limit": 50,
        },
        "30 days, one kb, 200": {"start": month, "kb_ids": [str(world.kb_ids[2])], "limit": 200},
        "30 days, no filter, 200": {"start": month, "limit": MAX_LIMIT},
    }


def as_params(mix: dict[str, Any]) -> dict[str, Any]:
    return {**mix, "start": mix["start"].isoformat(), "end": END.isoformat()}


def prepare(records: int, data_dir: Path) -> tuple[dict[str, str], str]:
    env = {**os.environ, "KBAUDIT_DATA_DIR": str(data_dir), "KBAUDIT_LOG_LEVEL": "warning"}
    marker = data_dir / "loaded"
    if not marker.exists():
        kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read")
        kbaudit(env, "import", str(dataset(records)), "--org", "bench")
        marker.touch()
    return env, kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read")


def baseline(data_dir: Path, mix: dict[str, Any], n: int) -> list[float]:
    container = build_container(Settings(data_dir=data_dir))
    with container.store.reading() as uow:
        org = uow.keys.organization_by_name("bench")
    assert org is not None
    filters = RecordFilters(
        start=mix["start"],
        end=END,
        kb_ids=tuple(mix.get("kb_ids", ())),
        statuses=tuple(mix.get("statuses", ())),
        actor_user_id=mix.get("actor_user_id"),
        session_id=mix.get("session_id"),
    )
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        with container.store.reading() as uow:
            uow.records.page(org.id, filters, None, mix["limit"] + 1)
        samples.append(time.perf_counter() - started)
    container.close()
    return samples


def sequential(url: str, key: str, params: dict[str, Any], n: int) -> list[float]:
    samples = []
    with httpx2.Client(headers={"x-api-key": key}, timeout=30) as client:
        client.get(url, params=params)
        for _ in range(n):
            started = time.perf_counter()
            response = client.get(url, params=params)
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return samples


async def concurrent(
    url: str, key: str, all_params: list[dict[str, Any]], clients: int, seconds: float
) -> tuple[int, list[float]]:
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    rng = random.Random(1)

    async def one_client(client: httpx2.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.get(url, params=rng.choice(all_params))
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200

    limits = httpx2.Limits(max_connections=clients)
    async with httpx2.AsyncClient(headers={"x-api-key": key}, timeout=60, limits=limits) as client:
        await asyncio.gather(*(one_client(client) for _ in range(clients)))
    return len(samples), samples


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="a data folder already loaded with the data set (org 'bench'), to skip the import",
    )
    args = parser.parse_args()
    data_dir = args.data_dir or OUT / f"query-{args.records}"
    if args.data_dir:
        (data_dir / "loaded").touch()
    env, key = prepare(args.records, data_dir)
    world = DemoWorld.build(random.Random(7))
    print(f"query benchmark: {args.records:,} records in one organization")
    print(f"  {'mix':32} {'baseline p50':>13} {'p99':>10}   {'HTTP p50':>10} {'p99':>10}")
    server = Server(env)
    everything: list[float] = []
    try:
        url = server.url + ROUTE
        for name, mix in mixes(world).items():
            base = baseline(Path(env["KBAUDIT_DATA_DIR"]), mix, args.requests)
            http = sequential(url, key, as_params(mix), args.requests)
            everything += http
            print(
                f"  {name:32} {ms(percentile(base, 0.5)):>13} {ms(percentile(base, 0.99)):>10}"
                f"   {ms(percentile(http, 0.5)):>10} {ms(percentile(http, 0.99)):>10}"
            )
        print(
            f"  all mixes, one client: p50 {ms(percentile(everything, 0.5))}, "
            f"p99 {ms(percentile(everything, 0.99))}"
        )
        all_params = [as_params(mix) for mix in mixes(world).values()]
        count, samples = asyncio.run(concurrent(url, key, all_params, args.clients, args.seconds))
        print(
            f"  {args.clients} concurrent clients: {count / args.seconds:,.0f} requests/s, "
            f"p50 {ms(percentile(samples, 0.5))}, p99 {ms(percentile(samples, 0.99))}"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
