"""What the store does differently on each database engine, in one adapter per engine,
chosen once for an engine (``adapter_for``). Everything else in the store is written once,
against SQLAlchemy's Core; the records' and the statistics' engine-specific parts are
subclasses (``SqliteRecords``, ``PostgresRecords``, ``SqliteStats``, ``PostgresStats``) that
the adapter names."""

from __future__ import annotations

import fcntl
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from threading import Semaphore
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite

from kbaudit.store.postgres import MIGRATION_LOCK, UPKEEP_LOCK, PostgresRecords
from kbaudit.store.records import RecordRepository, SqliteRecords
from kbaudit.store.sqlite import WriterLock
from kbaudit.store.stats import PostgresStats, SqliteStats, StatsRepository

if TYPE_CHECKING:
    from kbaudit.store.unit_of_work import UnitOfWork


class EngineAdapter(ABC):
    records: type[RecordRepository]
    stats: type[StatsRepository]
    # Whether records are kept in one partition per month, which a purge may drop whole.
    monthly_partitions: bool
    # Records per purge batch, and the pause after each (services/retention.py).
    purge_batch_size: int
    purge_pause_seconds: float

    @abstractmethod
    def database_file(self, engine: Engine) -> Path | None:
        """The file the database lives in, if it is one on this host."""

    @abstractmethod
    def writer_gate(self, database: Path | None) -> Semaphore | WriterLock:
        """What the writers of this process queue on before they open a transaction."""

    @abstractmethod
    def begin(self, connection: Connection, *, write: bool, snapshot: bool) -> None:
        """Open a unit of work's transaction."""

    @abstractmethod
    def pin_snapshot(self, snapshot: UnitOfWork, fence: Callable[[], UnitOfWork]) -> int:
        """Fix what ``snapshot`` sees, and return the newest seq it holds: it sees every
        record at or under that seq and none above. ``fence`` opens a short read."""

    @abstractmethod
    def insert(self, table: Table) -> Any:
        """An INSERT that can be told what to do on conflict."""

    @abstractmethod
    def upkeep_turn(self, engine: Engine) -> AbstractContextManager[bool]:
        """Whether this process may run the periodic upkeep now."""

    @abstractmethod
    def migration_turn(self, engine: Engine, lock_dir: Path | None) -> AbstractContextManager[None]:
        """The turn to migrate the schema: every host may start at once."""


class SqliteAdapter(EngineAdapter):
    records = SqliteRecords
    stats = SqliteStats
    monthly_partitions = False
    # One writer: every write (a query's access-log entry too) waits out a batch. 25 records
    # held the lock 6 ms, 100 held it 17 ms, and a query's p99 during a purge grows by about
    # that hold.
    purge_batch_size = 50
    purge_pause_seconds = 0.01

    def database_file(self, engine: Engine) -> Path | None:
        database = engine.url.database
        if not database or database == ":memory:":
            return None
        return Path(database)

    def writer_gate(self, database: Path | None) -> WriterLock:
        # Writers take turns on a lock of the whole host, not on SQLite's (store/sqlite.py).
        return WriterLock(database)

    def begin(self, connection: Connection, *, write: bool, snapshot: bool) -> None:
        # Writers begin IMMEDIATE, to queue on the lock rather than deadlock on upgrading
        # it; a read transaction is one snapshot already.
        if write:
            connection.info["begin"] = "BEGIN IMMEDIATE"
        connection.begin()

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


class PostgresAdapter(EngineAdapter):
    records = PostgresRecords
    stats = PostgresStats
    monthly_partitions = True
    # Readers and writers do not wait for a batch.
    purge_batch_size = 500
    purge_pause_seconds = 0.02

    def database_file(self, engine: Engine) -> None:
        return None

    def writer_gate(self, database: Path | None) -> Semaphore:
        return Semaphore(64)

    def begin(self, connection: Connection, *, write: bool, snapshot: bool) -> None:
        connection.begin()
        if snapshot:
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def pin_snapshot(self, snapshot: UnitOfWork, fence: Callable[[], UnitOfWork]) -> int:
        # Writers hold the snapshot lock shared until they end: while the fence holds it, no
        # record commits, and a snapshot taken then holds exactly the seqs handed out so far.
        with fence() as short:
            seq = short.records.newest_seq()
            snapshot.pin_snapshot()
        return seq

    def insert(self, table: Table) -> Any:
        return postgresql.insert(table)

    @contextmanager
    def upkeep_turn(self, engine: Engine) -> Iterator[bool]:
        # One process of the whole cluster at a time.
        with self._session_lock(engine, UPKEEP_LOCK, wait=False) as mine:
            yield mine

    @contextmanager
    def migration_turn(self, engine: Engine, lock_dir: Path | None) -> Iterator[None]:
        with self._session_lock(engine, MIGRATION_LOCK, wait=True):
            yield

    @contextmanager
    def _session_lock(self, engine: Engine, key: int, *, wait: bool) -> Iterator[bool]:
        take = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
        with engine.connect() as connection:
            result = connection.exec_driver_sql(f"SELECT {take}(%s)", (key,)).scalar_one()
            held = wait or bool(result)
            connection.commit()
            try:
                yield held
            finally:
                if held:
                    connection.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (key,))
                    connection.commit()


def adapter_for(engine: Engine) -> EngineAdapter:
    if engine.dialect.name == "postgresql":
        return PostgresAdapter()
    return SqliteAdapter()
