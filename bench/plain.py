"""What a user could write instead of kbaudit: plain scripts over flat SQLite tables.

These baselines share nothing with kbaudit (no schema, no code): the standard library's
``json`` and ``sqlite3``, ``zstandard`` and ``cryptography``'s AES-GCM, each record's fields
read straight from the NDJSON data set. A baseline that shared kbaudit's design would share
its costs and hide them.

- ``ingest``: each record's JSON into a flat table (id unique; time, actor and session
  indexes) plus a knowledge-base child table with its index, ``executemany``, 5,000 records a
  transaction.
- ``export_csv`` / ``export_ndjson``: from a flat single-table copy (every field a column,
  plus the record's JSON line), in time order, CSV by a generated f-string per row, NDJSON as
  the stored lines; then zstd level 3 and AES-256-GCM in 1 MiB chunks, into a file.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.json as pa_json
import pyarrow.parquet as pq
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

BATCH = 5000
CHUNK = 1 << 20
# The detail fields in the contract's order, as a user would copy them from the spec.
FIELDS = [
    "ref",
    "id",
    "created_at",
    "retrieval_status",
    "serving_decision",
    "audit_write_status",
    "requested_kb_count",
    "result_count",
    "response_ref_count",
    "eligible_version_count",
    "duration_ms",
    "actor_user_id",
    "session_id",
    "agent_id",
    "rag_query_id",
    "query_hash",
    "query_hash_key_version",
    "query_length_bucket",
    "request_id",
    "trace_id",
    "caller",
    "initiator_type",
    "principal_type",
    "permission",
    "permission_decision",
    "query_hash_scope",
    "query_length",
    "eligible_version_digest",
    "ineligible_counts_by_reason",
    "policy_version",
    "eligibility_rule_version",
    "scan_policy_version",
    "scan_policy_decision",
    "retrieval_config_version",
    "embedding_model",
    "reranker_model",
    "top_k",
    "effective_limit",
    "ranking_mode",
    "alpha",
    "reranked",
    "error_code",
    "error_category",
    "intent_recorded_at",
    "finalized_at",
]
TIMES = {"created_at", "intent_recorded_at", "finalized_at"}
NUMBERS = set(
    [
        "requested_kb_count",
        "result_count",
        "response_ref_count",
        "eligible_version_count",
        "duration_ms",
        "query_length",
        "top_k",
        "effective_limit",
        "alpha",
    ]
)
IDS = {"id", "actor_user_id", "session_id", "agent_id", "rag_query_id"}


PARQUET_ROWS = 50_000


def utc_text(value: str | None) -> str | None:
    """One fixed-width UTC form, so that text order is time order."""
    if value is None:
        return None
    instant = datetime.fromisoformat(value).astimezone(UTC)
    return instant.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _connect(path: Path) -> sqlite3.Connection:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA cache_size=-65536")
    return db


def ingest(ndjson: Path, path: Path) -> float:
    """Records/s of loading the data set into a flat table with a kb child table."""
    db = _connect(path)
    db.execute(
        "CREATE TABLE records (id TEXT NOT NULL, created_at TEXT NOT NULL, actor TEXT, "
        "session TEXT, status TEXT, doc TEXT NOT NULL)"
    )
    db.execute("CREATE UNIQUE INDEX records_id ON records (id)")
    for column in ("created_at", "actor", "session"):
        extra = "" if column == "created_at" else ", created_at"
        db.execute(f"CREATE INDEX records_{column} ON records ({column}{extra}, id)")
    db.execute("CREATE TABLE record_kbs (record_id TEXT, kb_id TEXT, created_at TEXT)")
    db.execute("CREATE INDEX record_kbs_kb ON record_kbs (kb_id, created_at)")
    started = time.perf_counter()
    count = 0
    with ndjson.open("rb") as lines:
        while batch := [json.loads(line) for _, line in zip(range(BATCH), lines, strict=False)]:
            for r in batch:
                r["created_at"] = utc_text(r["created_at"])
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", map(flat_row, batch))
            db.executemany(
                "INSERT INTO record_kbs VALUES (?, ?, ?)", [kb for r in batch for kb in kb_rows(r)]
            )
            db.execute("COMMIT")
            count += len(batch)
    db.close()
    return count / (time.perf_counter() - started)


def flat_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """A record as the flat table holds it: the indexed fields, and all of it as JSON."""
    return (
        record["id"],
        record["created_at"],
        record.get("actor_user_id"),
        record.get("session_id"),
        record.get("retrieval_status"),
        json.dumps(record),
    )


def kb_rows(record: dict[str, Any]) -> list[tuple[Any, ...]]:
    scopes = record.get("scopes", ())
    kbs = [scope["knowledge_base_id"] for scope in scopes if scope.get("knowledge_base_id")]
    return [(record["id"], kb, record["created_at"]) for kb in kbs]


def flat_copy(ndjson: Path, path: Path) -> None:
    """The export baselines' source: every field a column, plus the JSON line. Untimed."""
    if path.exists():
        return
    partial = path.with_suffix(".partial")
    db = _connect(partial)
    columns = ", ".join(f"{name} {_sql_type(name)}" for name in FIELDS)
    db.execute(f"CREATE TABLE flat ({columns}, line TEXT NOT NULL)")
    marks = ", ".join("?" for _ in range(len(FIELDS) + 1))
    db.execute("BEGIN")
    with ndjson.open("rb") as lines:
        for line in lines:
            record = json.loads(line)
            record["created_at"] = utc_text(record["created_at"])
            row = [record.get(name) for name in FIELDS]
            row = [json.dumps(v) if isinstance(v, dict) else v for v in row]
            db.execute(f"INSERT INTO flat VALUES ({marks})", [*row, line.rstrip(b"\n").decode()])
    db.execute("CREATE INDEX flat_time ON flat (created_at, id)")
    db.execute("COMMIT")
    db.close()
    partial.rename(path)


def _sql_type(name: str) -> str:
    return "REAL" if name == "alpha" else "INTEGER" if name in NUMBERS else "TEXT"


def _csv_row_function() -> Callable[[tuple[Any, ...]], str]:
    """One f-string for a whole row, generated from the field list."""
    cells = []
    for index, name in enumerate(FIELDS):
        value = f"r[{index}]"
        if name in NUMBERS or name in IDS or name in TIMES:
            cells.append(f"{{'' if {value} is None else {value}}}")
        elif name == "reranked":
            cells.append(f"{{'' if {value} is None else ('true' if {value} else 'false')}}")
        else:
            cells.append(f"{{q({value})}}")
    source = f'def row(r):\n    return f"{",".join(cells)}\\r\\n"\n'
    namespace: dict[str, Any] = {"q": _quoted}
    exec(source, namespace)  # noqa: S102 -- built from the field list above
    row: Callable[[tuple[Any, ...]], str] = namespace["row"]
    return row


def _quoted(value: str | None) -> str:
    """RFC 4180 quoting, and a ``'`` before what a spreadsheet would run as a formula."""
    if value is None:
        return ""
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        value = "'" + value
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def _lines(path: Path, window: tuple[str, str], what: str) -> Iterator[list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    cursor = db.execute(
        f"SELECT {what} FROM flat WHERE created_at >= ? AND created_at < ? ORDER BY created_at, id",
        window,
    )
    while batch := cursor.fetchmany(BATCH):
        yield batch
    db.close()


def encrypt_to(out: Path, chunks: Iterator[bytes]) -> None:
    with out.open("wb") as sink:
        encrypt_into(sink, chunks)


def encrypt_into(sink: BinaryIO, chunks: Iterator[bytes]) -> None:
    """zstd level 3, then AES-256-GCM over 1 MiB chunks, each with its own nonce."""
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    pending = b""
    for chunk in chunks:
        pending += compressor.compress(chunk)
        while len(pending) >= CHUNK:
            nonce = os.urandom(12)
            sink.write(nonce + aead.encrypt(nonce, pending[:CHUNK], None))
            pending = pending[CHUNK:]
    pending += compressor.flush()
    nonce = os.urandom(12)
    sink.write(nonce + aead.encrypt(nonce, pending, None))


def export_csv(path: Path, window: tuple[str, str], out: Path) -> float:
    row = _csv_row_function()
    count = 0

    def chunks() -> Iterator[bytes]:
        nonlocal count
        yield (",".join(FIELDS) + "\r\n").encode()
        for batch in _lines(path, window, ", ".join(FIELDS)):
            count += len(batch)
            yield "".join(map(row, batch)).encode()

    started = time.perf_counter()
    encrypt_to(out, chunks())
    return count / (time.perf_counter() - started)


def export_ndjson(path: Path, window: tuple[str, str], out: Path) -> float:
    count = 0

    def chunks() -> Iterator[bytes]:
        nonlocal count
        for batch in _lines(path, window, "line"):
            count += len(batch)
            yield ("\n".join(line for (line,) in batch) + "\n").encode()

    started = time.perf_counter()
    encrypt_to(out, chunks())
    return count / (time.perf_counter() - started)


def export_parquet(path: Path, window: tuple[str, str], out: Path) -> float:
    """What a user writes with pyarrow alone: the stored JSON lines read by Arrow's JSON
    reader with the types it infers, one Parquet file (zstd columns) per 50,000 rows, then
    the same zstd and AES-GCM as the other exports."""
    count = 0

    def chunks() -> Iterator[bytes]:
        nonlocal count
        lines: list[str] = []
        for batch in _lines(path, window, "line"):
            lines += (line for (line,) in batch)
            if len(lines) >= PARQUET_ROWS:
                yield _parquet_of(lines)
                count += len(lines)
                lines = []
        if lines:
            yield _parquet_of(lines)
            count += len(lines)

    started = time.perf_counter()
    encrypt_to(out, chunks())
    return count / (time.perf_counter() - started)


def _parquet_of(lines: list[str]) -> bytes:
    table = pa_json.read_json(io.BytesIO("\n".join(lines).encode()))
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue())
