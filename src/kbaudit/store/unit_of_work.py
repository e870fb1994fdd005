"""The unit of work owns the transaction: repositories never commit, and leaving the block
without ``commit()`` rolls everything back."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from threading import Semaphore
from types import TracebackType
from typing import cast

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from kbaudit.errors import StoreUnavailable
from kbaudit.store.access_log import AccessEntry, AccessLogRepository
from kbaudit.store.adapter import EngineAdapter, Gate
from kbaudit.store.delivery import DeliveryRepository
from kbaudit.store.engine import adapter_for
from kbaudit.store.exports import ExportRepository
from kbaudit.store.keys import KeyRepository
from kbaudit.store.log import LogRepository
from kbaudit.store.records import RecordRepository
from kbaudit.store.retention import RetentionRepository
from kbaudit.store.stats import StatsRepository

GATE_WAIT = 60.0


class UnitOfWork:
    records: RecordRepository
    keys: KeyRepository
    access_log: AccessLogRepository
    exports: ExportRepository
    retention: RetentionRepository
    log: LogRepository
    delivery: DeliveryRepository
    stats: StatsRepository

    def __init__(
        self,
        engine: Engine,
        adapter: EngineAdapter,
        *,
        write: bool,
        gate: Gate,
        after_release: Callable[[Connection], None] | None = None,
        snapshot: bool = False,
    ) -> None:
        self._engine = engine
        self._adapter = adapter
        self._write = write
        self._snapshot = snapshot
        self._gate = gate
        self._after_release = after_release
        self._connection: Connection | None = None

    def __enter__(self) -> UnitOfWork:
        if not self._gate.acquire(timeout=GATE_WAIT):
            raise StoreUnavailable("the database is busy; try again")
        connection = None
        try:
            connection = self._engine.connect()
            self._adapter.begin(connection, write=self._write, snapshot=self._snapshot)
        except BaseException as exc:
            if connection is not None:
                connection.close()
            self._release()
            if isinstance(exc, OperationalError):
                raise StoreUnavailable("the database cannot be reached") from exc
            raise
        self._connection = connection
        self.records = self._adapter.records(connection, self._adapter.insert)
        self.keys = KeyRepository(connection, self._adapter.insert)
        self.access_log = AccessLogRepository(connection)
        self.exports = ExportRepository(connection)
        self.retention = self._adapter.retention(connection)
        self.log = LogRepository(connection)
        self.delivery = DeliveryRepository(connection)
        self.stats = self._adapter.stats(connection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
        try:
            if connection.in_transaction():
                connection.rollback()  # on a lost connection, this resets it for the pool
        except DBAPIError as failed:
            # The connection died under a call made on the driver's own connection (COPY),
            # which SQLAlchemy did not see: the rollback is the first to find it gone.
            connection.invalidate()
            lost, exc = True, exc or failed
        finally:
            # An invalidated connection would connect again to show its info, and raise
            # while the server refuses connections (a restart): it has nothing to reset.
            if not connection.invalidated:
                connection.info.pop("begin", None)
            self._release()
            if self._after_release is not None:
                self._after_release(connection)
            connection.close()
        if lost:
            # A restarted or failed-over server: the client may retry, and the pool has
            # already dropped the dead connection.
            raise StoreUnavailable("the connection to the database was lost; try again") from exc
        if isinstance(exc, OperationalError | self._driver_errors):
            # The database refused to go on: a read-only or full disk, a lock held too long,
            # a server going down. Nothing was committed; a retry may find it back.
            raise StoreUnavailable("the database cannot take this now; try again") from exc

    @property
    def _driver_errors(self) -> type[Exception]:
        """The driver's OperationalError: what a call on its own connection (COPY) raises."""
        return cast(type[Exception], self._engine.dialect.loaded_dbapi.OperationalError)

    def _release(self) -> None:
        self._gate.release()

    def commit(self) -> None:
        assert self._connection is not None, "commit outside the unit of work"
        self._connection.commit()

    @property
    def connection(self) -> Connection:
        """The transaction's connection, for SQL no repository offers: tests and maintenance
        that must see what the unit of work sees. Services never need it."""
        assert self._connection is not None, "a connection outside the unit of work"
        return self._connection

    def pin_snapshot(self) -> None:
        """Take the transaction's snapshot now: PostgreSQL takes it at the first query."""
        assert self._connection is not None, "a snapshot outside the unit of work"
        self._connection.exec_driver_sql("SELECT 1")


class Store:
    """The database side of the container: hands out units of work over one engine."""

    def __init__(self, engine: Engine, max_readers: int = max(2, os.cpu_count() or 2)) -> None:
        self.engine = engine
        self.adapter = adapter_for(engine)
        # Units of work queue here, in Python, rather than inside the database driver: the
        # writers at their engine's gate (SQLite has one writer at a time, on a lock of the
        # whole host), the readers a few at a time (many threads stepping through SQLite at
        # once fight over the GIL at every row and get slower together).
        self._writes = self.adapter.write_path(engine, self._write_access, self._move_spooled)
        self._readers = Semaphore(max_readers)

    def append_access(self, entry: AccessEntry) -> None:
        """Write one access-log entry; once this returns, the entry survives this process
        being killed. On PostgreSQL concurrent entries share a commit; on SQLite each
        process spools its entries to a file and moves them in batches
        (store/sqlite/access_spool.py)."""
        self._writes.access_log.append(entry)

    def flush_access(self) -> None:
        """Bring into the log what this process (and any that is gone) appended so far."""
        self._writes.access_log.flush()

    def _write_access(self, entries: Sequence[AccessEntry]) -> None:
        with self.writing() as uow:
            uow.access_log.append(entries)
            uow.commit()

    def _move_spooled(
        self, name: str, entries: Sequence[AccessEntry], gone: Callable[[str], bool]
    ) -> None:
        with self.writing() as uow:
            if uow.access_log.claim_spool(name) and entries:
                uow.access_log.append(entries)
            # A name is kept until its file is deleted: up to the next move.
            uow.access_log.forget_spools(
                [spool for spool in uow.access_log.spools() if gone(spool)]
            )
            uow.commit()

    def close(self) -> None:
        self._writes.close()
        self.engine.dispose()

    def reading(self) -> UnitOfWork:
        """A short read: a request's worth."""
        return UnitOfWork(self.engine, self.adapter, write=False, gate=self._readers)

    def streaming(self) -> UnitOfWork:
        """A long read (an export part, a plan) that must not hold back the short ones. All
        of it sees one snapshot of the database: a plan's count and its parts' bounds, a
        part's rows and its count of records not finalized."""
        return UnitOfWork(self.engine, self.adapter, write=False, gate=Semaphore(1), snapshot=True)

    @contextmanager
    def snapshot(self) -> Iterator[tuple[UnitOfWork, int]]:
        """A long read in one snapshot (``streaming``), and the newest seq: the snapshot holds
        every record at or under that seq and none above it (an export's plan)."""
        with self.streaming() as uow:
            yield uow, self.adapter.pin_snapshot(uow, self.reading)

    def writing(self, *, bulk: bool = False) -> UnitOfWork:
        """``bulk``: a large write, one of a series (a purge batch): on SQLite it checkpoints
        itself once the lock is released (store/sqlite/writers.py)."""
        return UnitOfWork(
            self.engine,
            self.adapter,
            write=True,
            gate=self._writes.gate,
            after_release=self._writes.after_write(bulk),
        )

    def upkeep_turn(self) -> AbstractContextManager[bool]:
        """Whether this process may run the periodic upkeep now: on PostgreSQL, one process
        of the whole cluster at a time; SQLite lives on one host, whose processes share it."""
        return self.adapter.upkeep_turn(self.engine)

    def ping(self) -> None:
        """Raise unless the database answers, and (SQLite) its files are the ones opened."""
        self.adapter.check_files()
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
