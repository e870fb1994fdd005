"""Ingest throughput: the HTTP batch route and ``kbaudit import`` against raw SQLite inserts.

    .venv/bin/python -m bench.ingest [--records 1000000] [--clients 2]

The baseline is the same rows, already parsed and in storage form, inserted with the driver's
executemany into a fresh database with the same schema and indexes, 5,000 records per
transaction: what SQLite itself can take on this machine.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import msgspec

from bench.common import Server, dataset, fresh_env, kbaudit
from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.domain import OrgId, RecordIn
from kbaudit.store.engine import create_store_engine
from kbaudit.store.records import (
    _INSERT_RECORD,
    _INSERT_REF,
    _INSERT_SCOPE,
    _ref_rows,
    _scope_rows,
    stored_form,
)


def raw_sqlite_rate(path: Path) -> float:
    env = fresh_env("ingest-raw")
    build_container(Settings(data_dir=Path(env["KBAUDIT_DATA_DIR"]))).close()
    decoder = msgspec.json.Decoder(RecordIn)
    with path.open("rb") as handle:
        forms = [stored_form(decoder.decode(line)) for line in handle]
    # A driver connection from kbaudit's own engine: the same pragmas as the service.
    engine = create_store_engine(f"sqlite:///{Path(env['KBAUDIT_DATA_DIR']) / 'kbaudit.db'}")
    db = engine.raw_connection().driver_connection
    assert isinstance(db, sqlite3.Connection)
    db.execute("INSERT INTO organizations (uuid, name, created_at) VALUES ('x', 'raw', 'x')")
    started = time.perf_counter()
    for offset in range(0, len(forms), 5000):
        batch = forms[offset : offset + 5000]
        db.execute("BEGIN IMMEDIATE")
        db.executemany(_INSERT_RECORD, [(1, f.ref or "r" + f.id, *f.values) for f in batch])
        db.executemany(_INSERT_SCOPE, _scope_rows(OrgId(1), batch))
        db.executemany(_INSERT_REF, _ref_rows(OrgId(1), batch))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return len(forms) / elapsed


def import_rate(path: Path, records: int) -> float:
    env = fresh_env("ingest-import")
    kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read")
    started = time.perf_counter()
    kbaudit(env, "import", str(path), "--org", "bench")
    return records / (time.perf_counter() - started)


def http_rate(path: Path, records: int, clients: int) -> float:
    env = fresh_env("ingest-http")
    key = kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:write")
    with path.open("rb") as handle:
        lines = [line.rstrip(b"\n") for line in handle]
    bodies = [
        b'{"items":[' + b",".join(lines[i : i + 1000]) + b"]}" for i in range(0, len(lines), 1000)
    ]
    server = Server(env)
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
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    path = dataset(args.records)
    size_mb = path.stat().st_size / 1e6
    print(f"ingest benchmark: {args.records:,} records, {size_mb:,.0f} MB of NDJSON")
    raw = raw_sqlite_rate(path)
    print(f"  baseline raw SQLite executemany   {raw:>10,.0f} records/s")
    imported = import_rate(path, args.records)
    print(f"  {'kbaudit import':33} {imported:>10,.0f} records/s  {imported / raw:5.0%} of raw")
    http = http_rate(path, args.records, args.clients)
    label = f"HTTP batch route, {args.clients} clients"
    print(f"  {label:33} {http:>10,.0f} records/s  {http / raw:5.0%} of raw")


if __name__ == "__main__":
    main()
