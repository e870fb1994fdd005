"""The unit of work owns the transaction: repositories never commit, and leaving the block
without ``commit()`` rolls everything back."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from kbaudit.errors import StoreUnavailable
from kbaudit.store.access_log import AccessLogRepository
from kbaudit.store.exports import ExportRepository
from kbaudit.store.keys import KeyRepository
from kbaudit.store.records import RecordRepository


class UnitOfWork:
    records: RecordRepository
    keys: KeyRepository
    access_log: AccessLogRepository
    exports: ExportRepository

    def __init__(self, engine: Engine, *, write: bool) -> None:
        self._engine = engine
        self._write = write
        self._connection: Connection | None = None

    def __enter__(self) -> UnitOfWork:
        try:
            connection = self._engine.connect()
        except OperationalError as exc:
            raise StoreUnavailable("the database cannot be reached") from exc
        if self._write and connection.dialect.name == "sqlite":
            connection.info["begin"] = "BEGIN IMMEDIATE"
        connection.begin()
        self._connection = connection
        self.records = RecordRepository(connection)
        self.keys = KeyRepository(connection)
        self.access_log = AccessLogRepository(connection)
        self.exports = ExportRepository(connection)
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
        try:
            if connection.in_transaction():
                connection.rollback()
        finally:
            connection.info.pop("begin", None)
            connection.close()

    def commit(self) -> None:
        assert self._connection is not None, "commit outside the unit of work"
        self._connection.commit()


class Store:
    """The database side of the container: hands out units of work over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def reading(self) -> UnitOfWork:
        return UnitOfWork(self.engine, write=False)

    def writing(self) -> UnitOfWork:
        return UnitOfWork(self.engine, write=True)

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
