"""What the tamper-evident log costs and how fast it answers, and how fast ``kbaudit verify``
is, each against a baseline measured in the same run.

1. Ingest: ``kbaudit import`` of the data set into fresh embedded data folders, in process,
   with the log on and with ``append_writes`` replaced by a stub that numbers leaves without
   hashing or storing anything (the share is what the log costs a writer), and the plain
   script of ``bench.plain.ingest`` (a flat table, sharing nothing with kbaudit) as the
   baseline. Rounds alternate.
2. Routes: ``wrk`` against the checkpoint, proof and consistency routes of a data folder
   holding the large data set (``--data-dir``, e.g. the export benchmark's; the first start
   logs its records: that migration is timed too).
3. Verify: an NDJSON and a CSV export of everything, downloaded, then ``kbaudit verify``
   against ``sha256sum`` of the same files (the least any check of them must do).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import httpx2
import orjson

from bench import plain
from bench.common import OUT, Server, dataset, kbaudit
from bench.query import wrk
from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.domain import OrgId
from kbaudit.services.importer import import_lines
from kbaudit.services.keys import create_key

AUDIT = "/v1/knowledge-base/audit"


def ingest(records: int, rounds: int) -> None:
    source = dataset(records)
    rates: dict[str, list[float]] = {"log on": [], "log off": [], "plain script": []}
    for _ in range(rounds):
        rates["log on"].append(_import_rate(source, log_on=True))
        rates["log off"].append(_import_rate(source, log_on=False))
        rates["plain script"].append(plain.ingest(source, OUT / "log-plain-ingest.db"))
    best = {variant: max(values) for variant, values in rates.items()}
    print(f"ingest, {records:,} records, best of {rounds}:")
    for variant, rate in best.items():
        print(f"  {variant:12} {rate:9,.0f} records/s   (rounds: {_list(rates[variant])})")
    print(f"  log on / log off (what the log costs): {best['log on'] / best['log off']:.2f}")
    print(f"  log on / plain script: {best['log on'] / best['plain script']:.2f}")


def _import_rate(source: Path, log_on: bool) -> float:
    data_dir = OUT / "log-ingest"
    subprocess.run(["rm", "-rf", str(data_dir)], check=True)
    container = build_container(Settings(data_dir=data_dir, queue_url="inline"))
    try:
        create_key(container.store, container.clock, "bench", ("kb_audit:read",))
        stub = mock.patch(
            "kbaudit.services.ingest.append_writes",
            lambda uow, org_id, writes: list(range(len(writes))),
        )
        started = time.perf_counter()
        with source.open("rb") as lines:
            if log_on:
                report = import_lines(container.store, container.clock, OrgId(1), lines)
            else:
                with stub:
                    report = import_lines(container.store, container.clock, OrgId(1), lines)
        elapsed = time.perf_counter() - started
    finally:
        container.close()
    return sum(report.counts.values()) / elapsed


def routes(data_dir: Path, seconds: float, sample: Path) -> tuple[Server, str]:
    env = {**os.environ, "KBAUDIT_DATA_DIR": str(data_dir), "KBAUDIT_LOG_LEVEL": "warning"}
    started = time.perf_counter()
    kbaudit(env, "migrate")
    print(
        f"routes over {data_dir}: migrate (logs the records on first run) took "
        f"{time.perf_counter() - started:.1f} s"
    )
    key = kbaudit(
        env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read,kb_audit:export"
    )
    server = Server(env)
    size = int(_get(server, key, f"{AUDIT}/log/checkpoint").splitlines()[1])
    ids = _ids(sample, 500)
    pairs = [sorted(random.sample(range(size + 1), 2)) for _ in range(500)]
    paths = {
        "checkpoint": [f"{AUDIT}/log/checkpoint"],
        "proof": [f"{AUDIT}/retrievals/{record_id}/proof" for record_id in ids],
        "consistency": [f"{AUDIT}/log/consistency?first={a}&second={b}" for a, b in pairs],
        "reference: /healthz": ["/healthz"],
    }
    print(f"  the log holds {size:,} leaves; wrk, {seconds:.0f} s each")
    # The first look at a record reads its pages from disk (1M records are 4 GB here): one
    # run over the 500 records first, reported as such, then the measured runs.
    cold = wrk(server.url, key, paths["proof"], 1, seconds)
    print(
        f"  proof, first touch of each record (cold pages): p50 {cold['p50']:.2f} ms, "
        f"p99 {cold['p99']:.2f} ms"
    )
    for name, cycle in paths.items():
        for clients in (1, 4):
            figures = wrk(server.url, key, cycle, clients, seconds)
            print(
                f"  {name:20} {clients} client(s): {figures['rps']:7,.0f} requests/s, "
                f"p50 {figures['p50']:6.2f} ms, p99 {figures['p99']:6.2f} ms"
            )
    return server, key


def verify(server: Server, key: str, rounds: int) -> None:
    env = {**os.environ, "KBAUDIT_URL": server.url, "KBAUDIT_API_KEY": key}
    keys = OUT / "signing-keys.json"
    keys.write_text(_get(server, key, f"{AUDIT}/signing-keys"))
    window = ["--start", "2026-09-01T00:00:00Z", "--end", "2026-12-01T00:00:00Z"]  # the set's
    for export_format in ("ndjson", "csv"):
        created = _cli(env, "export", "create", *window, "--format", export_format)
        export_id = created.stdout.strip().splitlines()[-1]
        _cli(env, "export", "wait", export_id)
        folder = OUT / f"verify-{export_format}"
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        _cli(env, "export", "download", export_id, "--out", str(folder), "--no-verify")
        data = sorted(str(p) for p in folder.glob("kb-audit-*"))
        size = sum(Path(p).stat().st_size for p in data)
        times: dict[str, list[float]] = {"kbaudit verify": [], "sha256sum": []}
        for _ in range(rounds):
            times["sha256sum"].append(_timed(["sha256sum", *data], env))
            command = [sys.executable, "-m", "kbaudit.cli", "verify", str(folder), "--keys"]
            times["kbaudit verify"].append(_timed([*command, str(keys)], env))
        best = {name: min(values) for name, values in times.items()}
        print(f"verify, {export_format}: {len(data)} files, {size / 1e6:,.0f} MB, best of {rounds}")
        for name, seconds in best.items():
            print(f"  {name:15} {seconds:6.2f} s  {size / seconds / 1e6:7,.0f} MB/s")
        print(
            f"  kbaudit verify / sha256sum speed: {best['sha256sum'] / best['kbaudit verify']:.2f}"
        )


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kbaudit.cli", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )


def _get(server: Server, key: str, path: str) -> str:
    response = httpx2.get(server.url + path, headers={"x-api-key": key}, timeout=60)
    response.raise_for_status()
    return response.text


def _ids(source: Path, count: int) -> list[str]:
    """Ids of records spread over the first 200,000 of the data set."""
    ids = []
    with source.open("rb") as lines:
        for number, line in enumerate(lines):
            if number >= 200_000:
                break
            if number % 100 == 0:
                ids.append(orjson.loads(line)["id"])
    return random.Random(7).sample(ids, min(count, len(ids)))


def _list(values: list[Any]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000, help="records to import")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--data-dir", type=Path, help="a data folder holding the large set")
    parser.add_argument("--large", type=int, default=1_000_000, help="records in --data-dir")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-verify", action="store_true")
    args = parser.parse_args()
    if not args.skip_ingest:
        ingest(args.records, args.rounds)
    if args.data_dir:
        server, key = routes(args.data_dir, args.seconds, dataset(args.large))
        try:
            if not args.skip_verify:
                verify(server, key, args.rounds)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
