"""What an engine adapter answers for. Each database engine has a package of its own
(``store/sqlite/``, ``store/postgres/``) holding everything the store does differently on it:
its adapter, its repositories' engine-specific parts, its locks. ``store/engine.py`` picks
the adapter once, by the database URL; everything else in the store is written once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine, Table

from kbaudit.store.access_log import AccessEntry
from kbaudit.store.records import RecordRepository
from kbaudit.store.retention import RetentionRepository
from kbaudit.store.stats import StatsRepository

if TYPE_CHECKING:
    from kbaudit.store.unit_of_work import UnitOfWork

# Writing a batch of access-log entries; moving a spooled file's entries into the log.
WriteAccess = Callable[[Sequence[AccessEntry]], None]
MoveSpooled = Callable[[str, Sequence[AccessEntry], Callable[[str], bool]], None]


class Gate(Protocol):
    """Where the writers of a process queue before they open a transaction."""

    def acquire(self, blocking: bool = ..., timeout: float | None = ...) -> bool: ...

    def release(self) -> None: ...


class AccessLogSink(Protocol):
    """Where a process's access-log entries go on their way into the log."""

    def append(self, entry: AccessEntry) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class WritePath:
    """How one store's writes go on its engine: the gate its writers queue at, where its
    access-log entries go, what runs on a connection after a write (given whether the write
    was a bulk one), and what to stop when the store closes."""

    gate: Gate
    access_log: AccessLogSink
    after_write: Callable[[bool], Callable[[Connection], None] | None]
    close: Callable[[], None]


class EngineAdapter(ABC):
    records: type[RecordRepository]
    stats: type[StatsRepository]
    retention: type[RetentionRepository]
    # Records per purge batch, and the pause after each (services/retention.py).
    purge_batch_size: int
    purge_pause_seconds: float

    @abstractmethod
    def create_engine(self, url: str) -> Engine:
        """An engine for ``url``, set up to behave under load."""

    @abstractmethod
    def write_path(self, engine: Engine, write: WriteAccess, move: MoveSpooled) -> WritePath:
        """The write path of a store over ``engine``; ``write`` and ``move`` put access-log
        entries into the log."""

    @abstractmethod
    def begin(self, connection: Connection, *, write: bool, snapshot: bool) -> None:
        """Open a unit of work's transaction."""

    @abstractmethod
    def check_files(self) -> None:
        """Raise ``StoreUnavailable`` when the files the database lives in are not the ones
        this process opened (a database in a local folder)."""

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
