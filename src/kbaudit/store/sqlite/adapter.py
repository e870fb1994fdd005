"""How the store works on SQLite (the embedded default)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url

from kbaudit.errors import StoreUnavailable
from kbaudit.store.access_log import GroupCommit
from kbaudit.store.adapter import EngineAdapter, MoveSpooled, WriteAccess, WritePath
from kbaudit.store.retention import RetentionRepository
from kbaudit.store.sqlite.access_spool import AccessSpool
from kbaudit.store.sqlite.records import CACHE_KB, SqliteRecords
from kbaudit.store.sqlite.stats import SqliteStats
from kbaudit.store.sqlite.writers import Checkpointer, WriterLock

if TYPE_CHECKING:
    from kbaudit.store.unit_of_work import UnitOfWork


class SqliteAdapter(EngineAdapter):
    records = SqliteRecords
    stats = SqliteStats
    retention = RetentionRepository  # no monthly partitions to drop whole
    # One writer: every write (a query's access-log entry too) waits out a batch. 25 records
    # held the lock 6 ms, 100 held it 17 ms, and a query's p99 during a purge grows by about
    # that hold.
    purge_batch_size = 50
    purge_pause_seconds = 0.01

    def create_engine(self, url: str) -> Engine:
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
        event.listen(engine, "connect", _on_connect)
        event.listen(engine, "begin", _on_begin)
        return engine

    _database: SameFile | None = None

    def write_path(self, engine: Engine, write: WriteAccess, move: MoveSpooled) -> WritePath:
        database = database_file(engine)
        self._database = SameFile(database) if database else None
        # Writers take turns on a lock of the whole host, not on SQLite's (writers.py).
        writers = WriterLock(database)
        if database is None:  # in memory: no log to checkpoint, no folder to spool in
            return WritePath(writers, GroupCommit(write), lambda _bulk: None, writers.close)
        checkpointer = Checkpointer(database, writers)
        # Each process spools its entries to a file and moves them in batches (access_spool.py).
        spool = AccessSpool(database.with_name(database.name + ".access-spool"), move)

        def after_write(bulk: bool) -> Callable[[Connection], None]:
            # A bulk write (a purge batch) checkpoints itself once the lock is released, so
            # that a series of them cannot outrun the checkpoints; others leave it to the
            # checkpointer's thread.
            if bulk:
                return checkpointer.checkpoint
            return lambda _connection: checkpointer.wake()

        def close() -> None:
            spool.close()
            checkpointer.close()
            writers.close()

        return WritePath(writers, spool, after_write, close)

    def begin(self, connection: Connection, *, write: bool, snapshot: bool) -> None:
        # Writers begin IMMEDIATE, to queue on the lock rather than deadlock on upgrading
        # it; a read transaction is one snapshot already.
        if write:
            self.check_files()
            connection.info["begin"] = "BEGIN IMMEDIATE"
        connection.begin()

    def check_files(self) -> None:
        if self._database is not None:
            self._database.check()

    def pin_snapshot(self, snapshot: UnitOfWork, fence: Callable[[], UnitOfWork]) -> int:
        return snapshot.records.newest_seq()

    def insert(self, table: Table) -> Any:
        return sqlite.insert(table)

    @contextmanager
    def upkeep_turn(self, engine: Engine) -> Iterator[bool]:
        yield True  # SQLite lives on one host, whose processes share the upkeep

    @contextmanager
    def migration_turn(self, engine: Engine, lock_dir: Path | None) -> Iterator[None]:
        assert lock_dir is not None, "SQLite migrations lock a file in the data folder"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / "migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the migrators all run on this host
            yield


class SameFile:
    """The database file as it was when the store opened it. A folder deleted (or a file
    replaced) under a running server leaves its open connections writing into a file no
    path leads to any more: every write would be acknowledged, then lost. Each write and
    each readiness check first makes sure the path still leads to the file first seen, and
    that the file and its folder (where SQLite keeps its write-ahead log) take writes:
    otherwise SQLite's own answer is a bare "attempt to write a readonly database"."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen = _identity(path)

    def check(self) -> None:
        now = _identity(self._path)
        if self._seen is None:  # not made yet when the store opened: the first one counts
            self._seen = now
        if now is None or now != self._seen:
            raise StoreUnavailable(
                f"the database file {self._path.name} is gone or was replaced since kbaudit opened "
                "it; nothing more is written until it is restored and kbaudit restarted"
            )
        if not all(os.access(path, os.W_OK) for path in (self._path, self._path.parent)):
            raise StoreUnavailable(
                # No path: /readyz shows this to anyone.
                "the data folder is read-only; nothing more is written until it takes writes again"
            )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def database_file(engine: Engine) -> Path | None:
    """The file the database lives in; None in memory."""
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return Path(database)


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
    # No commit checkpoints, where it would hold every other writer back (writers.py).
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _on_begin(connection: Any) -> None:
    mode = connection.info.get("begin", "BEGIN")
    connection.exec_driver_sql(mode)
