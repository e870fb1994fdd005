"""Engines per database URL, with the settings each engine needs to behave under load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

CACHE_KB = 65536  # SQLite's page cache per connection


def create_store_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.get_backend_name() == "postgresql":
        return _postgres_engine(parsed.set(drivername="postgresql+psycopg"))
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        # Keep connections: each holds its own page cache, and an overflow connection is
        # closed on return, cold for the next request. 32 covers the server's thread pool.
        pool_size=32,
        max_overflow=32,
        json_serializer=lambda value: orjson.dumps(value).decode(),
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transactions out of the driver's hands: the unit of work issues BEGIN itself,
        # IMMEDIATE for writers, so that two writers queue on the lock instead of deadlocking.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Record ids are random, so their unique index is written all over: keep it cached.
        cursor.execute(f"PRAGMA cache_size=-{CACHE_KB}")
        cursor.execute("PRAGMA temp_store=MEMORY")
        # No commit checkpoints, where it would hold every other writer back (store/sqlite.py).
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.info.get("begin", "BEGIN")
        connection.exec_driver_sql(mode)

    return engine


def _postgres_engine(url: URL) -> Engine:
    engine = create_engine(
        url,
        pool_size=16,
        max_overflow=32,
        # A restarted server leaves dead connections in the pool: test each before use.
        pool_pre_ping=True,
        json_serializer=lambda value: orjson.dumps(value).decode(),
        connect_args={"connect_timeout": 10, "application_name": "kbaudit"},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Lists go as binary arrays: psycopg builds the text form in Python, and an ingest
        # batch's 5,000 ids took 20 ms that way against 2 ms in binary.
        dbapi_connection.adapters.register_dumper(list, ListBinaryDumper)

    return engine
