"""Ingest throughput: ``kbaudit import`` and the HTTP batch route against a plain script.

    .venv/bin/python -m bench.ingest [--records 1000000] [--clients 4] [--processes 1,2]

The baseline is ``bench.plain.ingest``: what a user could write instead, the same NDJSON parsed
with the standard library's json into a flat SQLite table holding each record's JSON, with
the same indexes a query needs (id unique; time, actor, session; a kb child table), 5,000
records a transaction. The HTTP route is also set against ``kbaudit import``, once for each
``kbaudit serve --processes`` count asked for.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2

from bench import plain
from bench.common import OUT, Server, dataset, fresh_env, kbaudit


def import_rate(path: Path, records: int) -> float:
    env = fresh_env("ingest-import")
    kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read")
    started = time.perf_counter()
    kbaudit(env, "import", str(path), "--org", "bench")
    return records / (time.perf_counter() - started)


def http_rate(path: Path, records: int, clients: int, processes: int) -> float:
    env = fresh_env("ingest-http")
    key = kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:write")
    with path.open("rb") as handle:
        lines = [line.rstrip(b"\n") for line in handle]
    bodies = [
        b'{"items":[' + b",".join(lines[i : i + 1000]) + b"]}" for i in range(0, len(lines), 1000)
    ]
    server = Server(env, processes)
    try:
        with httpx2.Client(
            headers={"x-api-key": key, "content-type": "application/json"}, timeout=120
        ) as client:
            post = f"{server.url}/v1/knowledge-base/audit/retrievals"

            def send(body: bytes) -> None:
                response = client.post(post, content=body)
                if response.status_code != 200:
                    raise RuntimeError(response.text[:500])

            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(send, bodies))
            return records / (time.perf_counter() - started)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--processes", default="1,2", help="kbaudit serve's process counts")
    args = parser.parse_args()
    path = dataset(args.records)
    size_mb = path.stat().st_size / 1e6
    print(f"ingest benchmark: {args.records:,} records, {size_mb:,.0f} MB of NDJSON")
    OUT.mkdir(exist_ok=True)
    base = plain.ingest(path, OUT / "plain-ingest.db")
    print(f"  {'baseline: plain script':44} {base:>10,.0f} records/s")
    imported = import_rate(path, args.records)
    print(f"  {'kbaudit import':44} {imported:>10,.0f} records/s  {imported / base:.2f}x baseline")
    for processes in (int(count) for count in args.processes.split(",")):
        http = http_rate(path, args.records, args.clients, processes)
        label = f"HTTP batch route, {args.clients} clients, {processes} process(es)"
        print(f"  {label:44} {http:>10,.0f} records/s  {http / imported:.2f}x kbaudit import")


if __name__ == "__main__":
    main()
