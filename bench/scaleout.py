"""The scale-out mode on PostgreSQL, SeaweedFS and Redis: import, export and query.

    .venv/bin/python -m bench.scaleout [--records 1000000] [--skip-import]

Starts the servers with ``scripts/services.sh`` into ``bench/out/services`` (unless
``KBAUDIT_TEST_PG_ADMIN_URL`` and friends already point at running ones), then measures, each
against a baseline in the same run:

- ingest: ``kbaudit import`` against a plain script that COPYs the same rows, already parsed
  and in storage form, into a fresh database with the same schema;
- export: rows/s of an NDJSON export with one and with two ``kbaudit worker`` processes (the
  API only enqueues), against ``COPY (SELECT <the same JSON line>) TO STDOUT`` piped through
  zstd level 3 and the same AEAD in a plain script; with a per-part timeline of who ran what;
- query: p50/p99 of the query route over the loaded records, one client.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import msgspec
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import OUT, Server, dataset, kbaudit, percentile
from bench.query import as_params, mixes
from kbaudit.crypto.envelope import LocalKeyManager
from kbaudit.crypto.files import EncryptedFileWriter
from kbaudit.crypto.keyring import Keyring
from kbaudit.demo import DemoWorld
from kbaudit.domain import OrgId, RecordIn
from kbaudit.store import postgres
from kbaudit.store.engine import create_store_engine
from kbaudit.store.migrate import migrate
from kbaudit.store.partitions import ensure_partitions
from kbaudit.store.records import (
    _RECORD_COLUMNS,
    _REF_COLUMNS,
    _SCOPE_COLUMNS,
    _ref_rows,
    _scope_rows,
    json_line,
    stored_form,
)
from kbaudit.store.tables import retrieval_records

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "1:" + "a2JhdWRpdC1iZW5jaC1tYXN0ZXIta2V5LTMyLWJ5dGVzIQ=="
ROUTE = "/v1/knowledge-base/audit"
WINDOW = (datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def services() -> dict[str, str]:
    if "KBAUDIT_TEST_PG_ADMIN_URL" in os.environ:
        return dict(os.environ)
    folder = OUT / "services"
    subprocess.run([str(ROOT / "scripts/services.sh"), "start", str(folder)], check=True)
    env = dict(os.environ)
    for line in (folder / "env").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


def fresh_database(admin_url: str, name: str) -> str:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = create_store_engine(url)
    migrate(engine, None)
    engine.dispose()
    return url


def kbaudit_env(base: dict[str, str], name: str, database_url: str) -> dict[str, str]:
    data_dir = OUT / f"scaleout-{name}"
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        **base,
        "KBAUDIT_DATA_DIR": str(data_dir),
        "KBAUDIT_LOG_LEVEL": "warning",
        "KBAUDIT_DATABASE_URL": database_url,
        "KBAUDIT_BLOB_URL": f"s3://kbaudit/bench-{name}-{uuid.uuid4().hex[:8]}",
        "KBAUDIT_S3_ENDPOINT": base["KBAUDIT_TEST_S3_ENDPOINT"],
        "KBAUDIT_QUEUE_URL": base["KBAUDIT_TEST_REDIS_URL"],
        "KBAUDIT_QUEUE_NAME": f"bench-{name}",
        "KBAUDIT_MASTER_KEY": MASTER_KEY,
        "KBAUDIT_EXPORT_MAX_ACTIVE_PER_ORG": "10",
    }


# -- ingest ---------------------------------------------------------------------------------


def raw_copy_rate(base: dict[str, str], path: Path) -> float:
    url = fresh_database(base["KBAUDIT_TEST_PG_ADMIN_URL"], "bench_raw")
    decoder = msgspec.json.Decoder(RecordIn)
    with path.open("rb") as handle:
        forms = [stored_form(decoder.decode(line)) for line in handle]
    engine = create_store_engine(url)
    with engine.connect() as connection:
        connection.exec_driver_sql(
            "INSERT INTO organizations (uuid, name, created_at) "
            "VALUES (gen_random_uuid(), 'bench', now())"
        )
        ensure_partitions(connection, {form.created_at for form in forms})
        connection.commit()
        # COPY goes through the driver, below SQLAlchemy's transaction: commit there too.
        driver = connection.connection.driver_connection
        assert driver is not None
        started = time.perf_counter()
        for offset in range(0, len(forms), 5000):
            batch = forms[offset : offset + 5000]
            rows = [(1, f.ref or "r" + f.id, *f.values) for f in batch]
            postgres.copy_in(connection, "retrieval_records", _RECORD_COLUMNS, rows)
            scopes, refs = _scope_rows(OrgId(1), batch), _ref_rows(OrgId(1), batch)
            postgres.copy_in(connection, "retrieval_scopes", _SCOPE_COLUMNS, scopes)
            postgres.copy_in(connection, "retrieval_refs", _REF_COLUMNS, refs)
            driver.commit()
        elapsed = time.perf_counter() - started
    engine.dispose()
    return len(forms) / elapsed


def import_rate(env: dict[str, str], path: Path, records: int) -> float:
    kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read")
    started = time.perf_counter()
    kbaudit(env, "import", str(path), "--org", "bench")
    return records / (time.perf_counter() - started)


def replicate(env: dict[str, str], copies: int) -> int:
    """Grow the loaded records ``copies`` times over inside PostgreSQL, each copy with new ids
    and 31 days earlier, so that large runs need not parse tens of GB of NDJSON again."""
    engine = create_store_engine(env["KBAUDIT_DATABASE_URL"])
    record_columns = [c.name for c in retrieval_records.columns if c.name not in ("seq",)]
    with engine.connect() as connection:
        for copy in range(1, copies + 1):
            shift = f"interval '{31 * copy} days'"
            ensure_partitions(
                connection,
                [
                    row[0]
                    for row in connection.exec_driver_sql(
                        f"SELECT DISTINCT date_trunc('month', created_at - {shift}) "
                        "FROM retrieval_records WHERE ref NOT LIKE '%%-copy%%'"
                    )
                ],
            )
            new_id = f"md5(id::text || '-copy{copy}')::uuid"
            values = {name: name for name in record_columns} | {
                "id": new_id,
                "ref": f"ref || '-copy{copy}'",
                "created_at": f"created_at - {shift}",
            }
            connection.exec_driver_sql(
                f"INSERT INTO retrieval_records ({', '.join(values)}) "
                f"SELECT {', '.join(values.values())} FROM retrieval_records "
                "WHERE ref NOT LIKE '%%-copy%%'"
            )
            for table in ("retrieval_scopes", "retrieval_refs"):
                columns = [
                    row[0]
                    for row in connection.exec_driver_sql(
                        "SELECT column_name FROM information_schema.columns "
                        f"WHERE table_name = '{table}' ORDER BY ordinal_position"
                    )
                ]
                child = {name: name for name in columns} | {
                    "record_id": f"md5(record_id::text || '-copy{copy}')::uuid",
                    "created_at": f"created_at - {shift}",
                }
                originals = "SELECT id FROM retrieval_records WHERE ref NOT LIKE '%%-copy%%'"
                connection.exec_driver_sql(
                    f"INSERT INTO {table} ({', '.join(child)}) "
                    f"SELECT {', '.join(child.values())} FROM {table} "
                    f"WHERE record_id IN ({originals})"
                )
            connection.commit()
            print(f"    copy {copy} of {copies} made")
        connection.exec_driver_sql("ANALYZE")
        total = connection.exec_driver_sql("SELECT count(*) FROM retrieval_records").scalar_one()
        connection.commit()
    engine.dispose()
    return int(total)


# -- export ---------------------------------------------------------------------------------


def baseline_export_rate(env: dict[str, str]) -> float:
    engine = create_store_engine(env["KBAUDIT_DATABASE_URL"])
    r = retrieval_records.c
    query = (
        retrieval_records.select()
        .with_only_columns(json_line("postgresql"))
        .where(r.org_id == 1, r.created_at >= WINDOW[0], r.created_at < WINDOW[1])
        .order_by(r.created_at, r.id)
    )
    aead = LocalKeyManager(Keyring({1: b"k" * 32}))
    primitive = aead.open_data_key("bench", "baseline", aead.new_data_key("bench", "baseline"))
    rows = 0
    started = time.perf_counter()
    # EncryptedFileWriter is zstd level 3, then the AEAD stream: the service's own writer.
    with (
        engine.connect() as connection,
        (OUT / "baseline.ndjson.zst.tink").open("wb") as sink,
        EncryptedFileWriter(primitive, b"baseline", sink) as writer,
    ):
        # Walk the time index in order, as each part does: the planner's own choice for the
        # whole window is to build every line, then sort them all on disk (half the speed).
        connection.exec_driver_sql("SET enable_sort = off")
        for batch in postgres.copy_out(connection, query, 5000):
            rows += len(batch)
            writer.write(("\n".join(str(line) for (line,) in batch) + "\n").encode())
    engine.dispose()
    return rows / (time.perf_counter() - started)


class Workers:
    def __init__(self, env: dict[str, str], count: int) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "kbaudit.cli", "worker", "--concurrency", "1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(count)
        ]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=120)


def service_export(env: dict[str, str], workers: int, rows_per_file: int) -> tuple[float, str]:
    """Rows/s of one NDJSON export, and its per-part timeline."""
    env = {**env, "KBAUDIT_EXPORT_ROWS_PER_FILE": str(rows_per_file)}
    scopes = "kb_audit:read,kb_audit:export"
    key = kbaudit(env, "keys", "create", "--org", "bench", "--scopes", scopes)
    server, pool = Server(env), Workers(env, workers)
    engine = create_store_engine(env["KBAUDIT_DATABASE_URL"])
    try:
        started = time.perf_counter()
        job = httpx2.post(
            f"{server.url}{ROUTE}/exports",
            json={
                "start": WINDOW[0].isoformat(),
                "end": WINDOW[1].isoformat(),
                "export_format": "ndjson",
            },
            headers={"x-api-key": key},
        ).json()
        seen = dict(_watch(engine, job["id"], started))
        elapsed = time.perf_counter() - started
        view = httpx2.get(
            f"{server.url}{ROUTE}/exports/{job['id']}", headers={"x-api-key": key}
        ).json()
    finally:
        pool.stop()
        server.stop()
        engine.dispose()
    assert view.get("status") == "succeeded", view
    return view["total_rows"] / elapsed, _timeline(seen)


Timeline = tuple[str, float, float]  # worker pid, first seen running, first seen done


def _watch(engine: Any, job_id: str, started: float) -> Iterator[tuple[int, Timeline]]:
    """Poll the parts: (part, (worker pid, first seen running, first seen done))."""
    running: dict[int, tuple[str, float]] = {}
    done: dict[int, float] = {}
    while True:
        with engine.connect() as connection:
            status = connection.execute(
                text("SELECT status FROM export_jobs WHERE id = :id"), {"id": job_id}
            ).scalar_one()
            parts = connection.execute(
                text("SELECT part_no, status, lease_owner FROM export_parts WHERE job_id = :id"),
                {"id": job_id},
            ).fetchall()
        now = time.perf_counter() - started
        for part_no, part_status, owner in parts:
            if part_status == "running" and part_no not in running:
                running[part_no] = (str(owner).split(":")[1], now)
            if part_status == "done" and part_no not in done:
                done[part_no] = now
        if status not in ("pending", "running"):
            break
        time.sleep(0.05)
    for part_no, (pid, began) in sorted(running.items()):
        yield part_no, (pid, began, done.get(part_no, now))


def _timeline(parts: dict[int, Timeline]) -> str:
    lines = []
    for part_no, (pid, began, ended) in sorted(parts.items()):
        lines.append(f"      part {part_no:3d}  worker {pid:>7}  {began:7.2f}s -> {ended:7.2f}s")
    overlapping = sum(
        1
        for a, (pa, ba, ea) in parts.items()
        for b, (pb, bb, eb) in parts.items()
        if a < b and pa != pb and ba < eb and bb < ea
    )
    lines.append(f"      pairs of parts running at once on different workers: {overlapping}")
    return "\n".join(lines)


# -- query ----------------------------------------------------------------------------------


def query_latencies(env: dict[str, str], requests: int) -> tuple[float, float]:
    key = kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read")
    server = Server(env)
    samples: list[float] = []
    try:
        with httpx2.Client(headers={"x-api-key": key}, timeout=60) as client:
            questions = [
                as_params(mix) for mix in mixes(DemoWorld.build(random.Random(7))).values()
            ]
            for question in questions:  # warm the caches
                client.get(f"{server.url}{ROUTE}/retrievals", params=question)
            for _ in range(requests):
                question = random.choice(questions)
                begun = time.perf_counter()
                response = client.get(f"{server.url}{ROUTE}/retrievals", params=question)
                samples.append(time.perf_counter() - begun)
                assert response.status_code == 200, response.text
    finally:
        server.stop()
    return percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rows-per-file", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--skip-import", action="store_true", help="reuse the loaded database")
    parser.add_argument(
        "--copies", type=int, default=0, help="then grow the records this many times over"
    )
    args = parser.parse_args()
    base = services()
    path = dataset(args.records)
    name = f"load{args.records}"
    print(f"scale-out benchmark: {args.records:,} records on PostgreSQL + SeaweedFS + Redis")
    admin_url = base["KBAUDIT_TEST_PG_ADMIN_URL"]
    if args.skip_import:
        loaded = make_url(admin_url).set(database=f"bench_{name}")
        env = kbaudit_env(base, name, loaded.render_as_string(hide_password=False))
    else:
        raw = raw_copy_rate(base, path)
        print(f"  ingest baseline: raw COPY            {raw:>10,.0f} records/s")
        env = kbaudit_env(base, name, fresh_database(admin_url, f"bench_{name}"))
        imported = import_rate(env, path, args.records)
        print(
            f"  ingest kbaudit import                {imported:>10,.0f} records/s  "
            f"{imported / raw:5.0%} of raw"
        )
    if args.copies:
        total = replicate(env, args.copies)
        print(f"  grown inside PostgreSQL to {total:,} records ({args.copies} shifted copies)")
    baseline = baseline_export_rate(env)
    print(f"  export baseline: COPY|zstd|AEAD      {baseline:>10,.0f} rows/s")
    one, _ = service_export(env, 1, args.rows_per_file)
    print(f"  export NDJSON, 1 worker              {one:>10,.0f} rows/s  {one / baseline:5.0%}")
    two, timeline_two = service_export(env, 2, args.rows_per_file)
    print(
        f"  export NDJSON, 2 workers             {two:>10,.0f} rows/s  {two / baseline:5.0%}"
        f"  {two / one:4.2f}x one worker"
    )
    print("    timeline, 2 workers:")
    print(timeline_two)
    p50, p99 = query_latencies(env, args.queries)
    print(f"  query route, 1 client, 6 mixes       p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")


if __name__ == "__main__":
    main()
