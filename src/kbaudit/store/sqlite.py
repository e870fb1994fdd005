"""What SQLite needs so that one long writer (the purge) does not stall requests.

- Writers take turns on a lock of the whole host, not on SQLite's own: a writer that finds
  SQLite's lock taken sleeps in growing steps, up to 100 ms, and often long after the lock
  was freed. The file lock hands over within a millisecond, to any process.
- A bulk writer (a purge batch) checkpoints after it let the lock go. SQLite checkpoints
  (copies the write-ahead log into the database) inside the commit that fills the log, and
  every writer queued behind a 500-record purge batch waited some 80 ms for it.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from pathlib import Path
from typing import BinaryIO

import structlog
from sqlalchemy import Connection, Engine

log = structlog.get_logger("kbaudit.store")

AUTOMATIC_CHECKPOINT_PAGES = 1000  # SQLite's default
_POLL = 0.0005  # seconds between tries of a taken file lock


def database_file(engine: Engine) -> Path | None:
    """The SQLite file behind ``engine``; None for PostgreSQL and in-memory databases."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)


class WriterLock:
    """One writer at a time: threads of this process on a lock, processes on a file lock."""

    def __init__(self, database: Path | None) -> None:
        self._threads = threading.Lock()
        self._file: BinaryIO | None = None
        if database is not None:
            self._file = open(database.with_name(database.name + ".writer-lock"), "ab")  # noqa: SIM115

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self._threads.acquire(timeout=timeout):
            return False
        if self._file is None:
            return True
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._threads.release()
                    return False
                time.sleep(_POLL)

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def hold_checkpoints(connection: Connection) -> None:
    """Keep this connection's commits from checkpointing, until ``checkpoint``."""
    _driver(connection).execute("PRAGMA wal_autocheckpoint=0")


def checkpoint(connection: Connection) -> None:
    """Copy the log into the database now, and give the connection its automatic
    checkpoints back. PASSIVE never waits for readers or writers: it copies what it can."""
    # On the driver's connection: SQLAlchemy's would open a transaction, where no
    # checkpoint can run.
    driver = _driver(connection)
    try:
        driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:
        log.warning("checkpoint_failed", error=str(exc))
    driver.execute(f"PRAGMA wal_autocheckpoint={AUTOMATIC_CHECKPOINT_PAGES}")


def _driver(connection: Connection) -> sqlite3.Connection:
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver
