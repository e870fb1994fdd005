"""The scale-out mode on PostgreSQL, SeaweedFS and Redis: import, export and query.

    .venv/bin/python -m bench.scaleout [--records 1000000] [--skip-import] [--rounds 3]
        [--threads N]

Starts the servers with ``scripts/services.sh`` into ``bench/out/services`` (unless
``KBAUDIT_TEST_PG_ADMIN_URL`` and friends already point at running ones), then measures, each
against a baseline in the same run:

- ingest: ``kbaudit import`` against a plain script that parses the same NDJSON with the
  standard library and COPYs each record's JSON into a flat table (id unique; time, actor,
  session indexes) and a kb child table with its index, in a database of its own;
- export: rows/s of an NDJSON export with one and with two ``kbaudit worker`` processes (the
  API only enqueues), against a plain script that COPYs the stored JSON out of that flat table
  in time order through zstd level 3 and AES-256-GCM in 1 MiB chunks (bench.plain), into a
  local file, and again into an object in the bucket kbaudit writes to (obstore); with a
  per-part timeline of who ran what. The three take turns ``--rounds`` times; each worker runs
  ``--threads`` parts at once (default: kbaudit's own, ``KBAUDIT_WORKER_THREADS``);
- query: p50/p99 of the query route over the loaded records, one client.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

import httpx2
import obstore
import psycopg
from obstore.store import S3Store
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import plain
from bench.common import OUT, Server, dataset, kbaudit, percentile
from bench.query import as_params, mixes
from kbaudit.config import Settings
from kbaudit.demo import DemoWorld
from kbaudit.document import instant_of
from kbaudit.services.stats import refresh_stale_stats
from kbaudit.store.engine import create_store_engine
from kbaudit.store.migrate import migrate
from kbaudit.store.postgres.partitions import ensure_partitions
from kbaudit.store.records import RECORD_COLUMNS
from kbaudit.store.unit_of_work import Store

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "1:" + "a2JhdWRpdC1iZW5jaC1tYXN0ZXIta2V5LTMyLWJ5dGVzIQ=="
ROUTE = "/v1/knowledge-base/audit"
WORKER_START_SECONDS = 3.0
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


FLAT_TABLES = """
CREATE TABLE flat (id uuid NOT NULL, created_at timestamptz NOT NULL, actor uuid, session uuid,
    status text, doc text NOT NULL);
CREATE UNIQUE INDEX flat_id ON flat (id);
CREATE INDEX flat_time ON flat (created_at, id);
CREATE INDEX flat_actor ON flat (actor, created_at, id);
CREATE INDEX flat_session ON flat (session, created_at, id);
CREATE TABLE flat_kbs (record_id uuid NOT NULL, kb_id uuid NOT NULL, created_at timestamptz);
CREATE INDEX flat_kbs_kb ON flat_kbs (kb_id, created_at);
"""


def plain_copy_rate(base: dict[str, str], path: Path) -> tuple[float, str]:
    """What a user could write instead: the data set parsed with the standard library's json
    and COPYed into a flat table of each record's JSON with the indexes a query needs, and a
    kb child table; 5,000 records a transaction. Returns records/s and the database's URL
    (the export baseline reads the same table)."""
    admin = make_url(base["KBAUDIT_TEST_PG_ADMIN_URL"])
    admin_libpq = _libpq(admin.render_as_string(hide_password=False))
    with psycopg.connect(admin_libpq, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS bench_plain WITH (FORCE)")
        connection.execute("CREATE DATABASE bench_plain")
    url = admin.set(database="bench_plain").render_as_string(hide_password=False)
    with psycopg.connect(_libpq(url)) as connection:
        connection.execute(FLAT_TABLES)
        connection.commit()
        started = time.perf_counter()
        count = 0
        with path.open("rb") as lines:
            while batch := [json.loads(line) for _, line in zip(range(5000), lines, strict=False)]:
                with connection.cursor() as cursor:
                    with cursor.copy("COPY flat FROM STDIN") as copy:
                        for r in batch:
                            copy.write_row(plain.flat_row(r))
                    with cursor.copy("COPY flat_kbs FROM STDIN") as copy:
                        for r in batch:
                            for kb in plain.kb_rows(r):
                                copy.write_row(kb)
                connection.commit()
                count += len(batch)
        rate = count / (time.perf_counter() - started)
        connection.execute("ANALYZE")
        connection.commit()
    return rate, url


def import_rate(env: dict[str, str], path: Path, records: int) -> float:
    kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read")
    started = time.perf_counter()
    kbaudit(env, "import", str(path), "--org", "bench")
    return records / (time.perf_counter() - started)


def replicate(env: dict[str, str], plain_url: str, copies: int) -> int:
    """Grow the loaded records ``copies`` times over inside PostgreSQL, each copy with new ids
    and 31 days earlier, so that large runs need not parse tens of GB of NDJSON again; the
    baseline's flat table grows alike. Copies keep their originals' documents: the bytes to
    export are the same size, only the ids and times inside them are the originals'."""
    engine = create_store_engine(env["KBAUDIT_DATABASE_URL"])
    with engine.connect() as connection:
        originals = int(connection.exec_driver_sql("SELECT max(seq) FROM records").scalar_one())
        for copy in range(1, copies + 1):
            shift, offset = 31 * copy * 86_400_000_000, originals * copy
            instants = connection.exec_driver_sql(
                f"SELECT DISTINCT created_at - {shift} FROM records WHERE seq <= {originals}"
            ).scalars()
            ensure_partitions(connection, {instant_of(value) for value in instants})
            connection.exec_driver_sql(
                f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) "
                f"SELECT seq + {offset}, org_id, "
                f"decode(md5(encode(id, 'hex') || '-copy{copy}'), 'hex'), ref || '-copy{copy}', "
                f"created_at - {shift}, retrieval_status, audit_write_status, actor_user_id, "
                f"session_id, document FROM records WHERE seq <= {originals}"
            )
            connection.exec_driver_sql(
                f"INSERT INTO record_kbs (org_id, kb_id, created_at, seq) "
                f"SELECT org_id, kb_id, created_at - {shift}, seq + {offset} "
                f"FROM record_kbs WHERE seq <= {originals}"
            )
            connection.commit()
            print(f"    copy {copy} of {copies} made")
        connection.exec_driver_sql(
            "SELECT setval('records_seq_seq', (SELECT max(seq) FROM records))"
        )
        connection.exec_driver_sql("ANALYZE")
        total = connection.exec_driver_sql("SELECT count(*) FROM records").scalar_one()
        connection.commit()
    engine.dispose()
    with psycopg.connect(_libpq(plain_url)) as plain:
        plain.execute("CREATE TEMP TABLE originals AS SELECT * FROM flat")
        for copy in range(1, copies + 1):
            plain.execute(
                f"INSERT INTO flat SELECT md5(id::text || '-copy{copy}')::uuid, "
                f"created_at - interval '{31 * copy} days', actor, session, status, doc "
                "FROM originals"
            )
        plain.execute("ANALYZE flat")
        plain.commit()
    return int(total)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# -- export ---------------------------------------------------------------------------------


def baseline_export_rate(plain_url: str, bucket: S3Store | None = None) -> float:
    """The plain script: COPY the stored JSON out of the flat table in time order, through
    zstd level 3 and AES-256-GCM in 1 MiB chunks (bench.plain), into a local file, or
    with ``bucket`` into an object there (obstore's own writer, as a user would)."""
    rows = 0
    query = (
        "COPY (SELECT doc FROM flat WHERE created_at >= '{}' AND created_at < '{}' "
        "ORDER BY created_at, id) TO STDOUT"
    ).format(*(instant.isoformat() for instant in WINDOW))

    def chunks() -> Iterator[bytes]:
        nonlocal rows
        with (
            psycopg.connect(_libpq(plain_url)) as connection,
            connection.cursor() as cursor,
            cursor.copy(query) as copy,
        ):
            for block in copy:
                rows += bytes(block).count(b"\n")
                yield bytes(block)

    started = time.perf_counter()
    if bucket is None:
        plain.encrypt_to(OUT / "baseline.ndjson.zst.aesgcm", chunks())
        return rows / (time.perf_counter() - started)
    with obstore.open_writer(bucket, BASELINE_OBJECT) as sink:
        plain.encrypt_into(cast(BinaryIO, sink), chunks())
    rate = rows / (time.perf_counter() - started)
    obstore.delete(bucket, BASELINE_OBJECT)
    return rate


BASELINE_OBJECT = "bench-baseline/export.ndjson.zst.aesgcm"


def baseline_bucket(base: dict[str, str]) -> S3Store:
    """The bucket kbaudit's files go to, reached as a plain script would: its own client."""
    return S3Store(
        "kbaudit",
        endpoint=base["KBAUDIT_TEST_S3_ENDPOINT"],
        access_key_id=base["AWS_ACCESS_KEY_ID"],
        secret_access_key=base["AWS_SECRET_ACCESS_KEY"],
        region=base["AWS_REGION"],
        client_options={"allow_http": True},
    )


class Workers:
    def __init__(self, env: dict[str, str], count: int, threads: int) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "kbaudit.cli", "worker", "--concurrency", str(threads)],
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


def service_export(
    env: dict[str, str], workers: int, threads: int, rows_per_file: int
) -> tuple[float, str]:
    """Rows/s of one NDJSON export, and its per-part timeline."""
    env = {**env, "KBAUDIT_EXPORT_ROWS_PER_FILE": str(rows_per_file)}
    scopes = "kb_audit:read,kb_audit:export"
    key = kbaudit(env, "keys", "create", "--org", "bench", "--scopes", scopes)
    server, pool = Server(env), Workers(env, workers, threads)
    engine = create_store_engine(env["KBAUDIT_DATABASE_URL"])
    # A deployment's workers are up before an export comes: these get the time to start
    # (1-1.5 s of imports), which the figure would otherwise count.
    time.sleep(WORKER_START_SECONDS)
    try:
        before = cpu_seconds()
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
        used = {name: seconds - before[name] for name, seconds in cpu_seconds().items()}
        view = httpx2.get(
            f"{server.url}{ROUTE}/exports/{job['id']}", headers={"x-api-key": key}
        ).json()
    finally:
        pool.stop()
        server.stop()
        engine.dispose()
    assert view.get("status") == "succeeded", view
    return view["total_rows"] / elapsed, _timeline(seen) + "\n" + _cpu_line(used, elapsed)


SERVERS = {"postgres": "PostgreSQL", "weed": "SeaweedFS", "kbaudit": "kbaudit"}


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the processes of each server (kbaudit's: API and
    workers), from /proc (Linux)."""
    used = dict.fromkeys(SERVERS, 0.0)
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            command = (stat.parent / "cmdline").read_bytes()
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        for name in SERVERS:
            if name.encode() in command:
                used[name] += (int(fields[11]) + int(fields[12])) / tick
                break
    return used


def _cpu_line(used: dict[str, float], elapsed: float) -> str:
    shares = ", ".join(f"{SERVERS[name]} {seconds:.1f} s" for name, seconds in used.items())
    total = sum(used.values())
    return f"    CPU during the export: {shares}; {total / elapsed:.2f} of the 2 cores"


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


def export_rounds(
    env: dict[str, str], plain_url: str, rounds: int, threads: int, rows_per_file: int
) -> None:
    """Baselines, one worker and two workers take turns, ``rounds`` times: this machine's
    speed drifts by tens of percent within a minute, so each round's figures are judged
    against that round's baselines, and the medians of those shares are reported. Two
    baselines: into a local file, and into the bucket kbaudit stores its files in."""
    bases, uploads, ones, twos = [], [], [], []
    bucket = baseline_bucket(env)
    for round_no in range(1, rounds + 1):
        bases.append(baseline_export_rate(plain_url))
        uploads.append(baseline_export_rate(plain_url, bucket))
        one, timeline_one = service_export(env, 1, threads, rows_per_file)
        two, timeline_two = service_export(env, 2, threads, rows_per_file)
        ones.append(one)
        twos.append(two)
        print(
            f"  round {round_no}: baselines {bases[-1]:,.0f} (file) and {uploads[-1]:,.0f} "
            f"(bucket) rows/s; 1 worker {one:,.0f} ({one / bases[-1]:.2f}x file, "
            f"{one / uploads[-1]:.2f}x bucket), 2 workers {two:,.0f} ({two / one:.2f}x one)"
        )
        print(f"    1 worker:{timeline_one.splitlines()[-1].removeprefix('   ')}")
        print(f"    2 workers:{timeline_two.splitlines()[-1].removeprefix('   ')}")
    parts_two = "\n".join(timeline_two.splitlines()[:-1])  # its CPU line is printed above
    print(f"    timeline of the last round, 2 workers:\n{parts_two}")
    remove_files(bucket, env["KBAUDIT_BLOB_URL"])
    print(
        f"  export NDJSON, {threads} thread(s) a worker, medians of {rounds} rounds: "
        f"baselines {statistics.median(bases):,.0f} rows/s (file), "
        f"{statistics.median(uploads):,.0f} rows/s (bucket); 1 worker "
        f"{statistics.median(ones):,.0f} rows/s, 2 workers {statistics.median(twos):,.0f}"
    )
    for name, shares in (
        ("1 worker against the file baseline", _shares(ones, bases)),
        ("1 worker against the bucket baseline", _shares(ones, uploads)),
        ("2 workers against 1 worker", _shares(twos, ones)),
    ):
        print(
            f"    {name:38} {statistics.median(shares):.2f}x "
            f"(rounds {shares[0]:.2f}-{shares[-1]:.2f}x)"
        )


def remove_files(bucket: S3Store, blob_url: str) -> int:
    """Delete the files this run's exports wrote (each run writes under a prefix of its own,
    about 1.5 GB for four rounds), so that runs do not pile up in SeaweedFS."""
    prefix = urlsplit(blob_url).path.strip("/") + "/"
    removed = 0
    for batch in obstore.list(bucket, prefix, chunk_size=1000):
        obstore.delete(bucket, [meta["path"] for meta in batch])
        removed += len(batch)
    return removed


def _shares(measured: list[float], against: list[float]) -> list[float]:
    return sorted(m / a for m, a in zip(measured, against, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rows-per-file", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3, help="of the export's figures")
    parser.add_argument(
        "--threads",
        type=int,
        default=Settings().worker_threads,
        help="parts a worker runs at once (default: kbaudit's)",
    )
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
    plain_url = make_url(admin_url).set(database="bench_plain")
    plain_url_text = plain_url.render_as_string(hide_password=False)
    if args.skip_import:
        loaded = make_url(admin_url).set(database=f"bench_{name}")
        env = kbaudit_env(base, name, loaded.render_as_string(hide_password=False))
    else:
        raw, plain_url_text = plain_copy_rate(base, path)
        print(f"  ingest baseline: plain script COPY   {raw:>10,.0f} records/s")
        env = kbaudit_env(base, name, fresh_database(admin_url, f"bench_{name}"))
        imported = import_rate(env, path, args.records)
        print(
            f"  ingest kbaudit import                {imported:>10,.0f} records/s  "
            f"{imported / raw:.2f}x baseline"
        )
    # The import leaves the statistics of its hours to the upkeep of the next running
    # workers; counted here, so that the export figures below are the export's alone.
    counted = time.perf_counter()
    store = Store(create_store_engine(env["KBAUDIT_DATABASE_URL"]))
    while refresh_stale_stats(store):
        pass
    store.close()
    print(f"  stats upkeep after the import        {time.perf_counter() - counted:>10.1f} s")
    if args.copies:
        total = replicate(env, plain_url_text, args.copies)
        print(f"  grown inside PostgreSQL to {total:,} records ({args.copies} shifted copies)")
    export_rounds(env, plain_url_text, args.rounds, args.threads, args.rows_per_file)
    p50, p99 = query_latencies(env, args.queries)
    print(f"  query route, 1 client, 6 mixes       p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")


if __name__ == "__main__":
    main()
