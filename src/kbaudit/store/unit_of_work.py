"""The unit of work owns the transaction: repositories never commit, and leaving the block
without ``commit()`` rolls everything back."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from threading import Semaphore
from types import TracebackType

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from kbaudit.errors import StoreUnavailable
from kbaudit.store.access_log import AccessEntry, AccessLogRepository, GroupCommit
from kbaudit.store.access_spool import AccessSpool
from kbaudit.store.adapters import EngineAdapter, adapter_for
from kbaudit.store.delivery import DeliveryRepository
from kbaudit.store.exports import ExportRepository
from kbaudit.store.keys import KeyRepository
from kbaudit.store.log import LogRepository
from kbaudit.store.records import RecordRepository
from kbaudit.store.retention import RetentionRepository
from kbaudit.store.sqlite import Checkpointer, WriterLock
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
        gate: Semaphore | WriterLock,
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
        try:
            connection = self._engine.connect()
            self._adapter.begin(connection, write=self._write, snapshot=self._snapshot)
        except OperationalError as exc:
            self._release()
            raise StoreUnavailable("the database cannot be reached") from exc
        self._connection = connection
        self.records = self._adapter.records(connection, self._adapter.insert)
        self.keys = KeyRepository(connection, self._adapter.insert)
        self.access_log = AccessLogRepository(connection)
        self.exports = ExportRepository(connection)
        self.retention = RetentionRepository(connection, self._adapter.monthly_partitions)
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
        finally:
            connection.info.pop("begin", None)
            self._release()
            if self._after_release is not None:
                self._after_release(connection)
            connection.close()
        if lost:
            # A restarted or failed-over server: the client may retry, and the pool has
            # already dropped the dead connection.
            raise StoreUnavailable("the connection to the database was lost; try again") from exc

    def _release(self) -> None:
        self._gate.release()

    def commit(self) -> None:
        assert self._connection is not None, "commit outside the unit of work"
        self._connection.commit()

    def pin_snapshot(self) -> None:
        """Take the transaction's snapshot now: PostgreSQL takes it at the first query."""
        assert self._connection is not None, "a snapshot outside the unit of work"
        self._connection.exec_driver_sql("SELECT 1")


class Store:
    """The database side of the container: hands out units of work over one engine."""

    def __init__(self, engine: Engine, max_readers: int = max(2, os.cpu_count() or 2)) -> None:
        self.engine = engine
        self.adapter = adapter_for(engine)
        # Units of work queue here, in Python, rather than inside the database driver:
        # - SQLite has one writer at a time: writers take turns on a lock of the whole host
        #   (see store/sqlite.py).
        # - Many threads stepping through SQLite at once fight over the GIL at every row and
        #   get slower together; a few readers at a time keep both cores busy.
        database = self.adapter.database_file(engine)
        self._writers = self.adapter.writer_gate(database)
        self._readers = Semaphore(max_readers)
        self._checkpointer: Checkpointer | None = None
        self._access_log: GroupCommit | AccessSpool = GroupCommit(self._write_access)
        if database is not None:  # a SQLite file: its log to checkpoint, a folder to spool in
            assert isinstance(self._writers, WriterLock)
            self._checkpointer = Checkpointer(database, self._writers)
            spool = database.with_name(database.name + ".access-spool")
            self._access_log = AccessSpool(spool, self._move_spooled)

    def append_access(self, entry: AccessEntry) -> None:
        """Write one access-log entry; once this returns, the entry survives this process
        being killed. On PostgreSQL concurrent entries share a commit; on SQLite each
        process spools its entries to a file and moves them in batches (store/access_spool.py)."""
        self._access_log.append(entry)

    def flush_access(self) -> None:
        """Bring into the log what this process (and any that is gone) appended so far."""
        self._access_log.flush()

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
        self._access_log.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        if isinstance(self._writers, WriterLock):
            self._writers.close()
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
        """``bulk``: a large write, one of a series (a purge batch). On SQLite it checkpoints
        itself once the lock is released, so that the series cannot outrun the checkpoints;
        other writes leave it to the checkpointer's thread (see store/sqlite.py)."""
        return UnitOfWork(
            self.engine,
            self.adapter,
            write=True,
            gate=self._writers,
            after_release=self._after_write(bulk),
        )

    def _after_write(self, bulk: bool) -> Callable[[Connection], None] | None:
        if self._checkpointer is None:
            return None
        if bulk:
            return self._checkpointer.checkpoint
        wake = self._checkpointer.wake
        return lambda _connection: wake()

    def upkeep_turn(self) -> AbstractContextManager[bool]:
        """Whether this process may run the periodic upkeep now: on PostgreSQL, one process
        of the whole cluster at a time; SQLite lives on one host, whose processes share it."""
        return self.adapter.upkeep_turn(self.engine)

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
