"""What SQLite needs so that one long writer (the purge) does not stall requests.

- Writers take turns on a lock of the whole host, not on SQLite's own: a writer that finds
  SQLite's lock taken sleeps in growing steps, up to 100 ms, and often long after the lock
  was freed. The file lock hands over within a millisecond, to any process.
- No commit checkpoints (copies the write-ahead log into the database). SQLite would do it
  inside the commit that fills the log, under the writer lock: every writer queued behind a
  500-record purge batch waited some 80 ms for it, and when a query's access-log entry was the
  commit that found the log full, the query paid for the purge's pages. Instead, a bulk
  writer (a purge batch) checkpoints once it has let the lock go, before its next batch, so
  it cannot outrun the checkpoints; after any other write, a thread of its own does.
"""

from __future__ import annotations

import fcntl
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import BinaryIO

import structlog
from sqlalchemy import Connection

log = structlog.get_logger("kbaudit.store")

# The checkpointer lets writes gather this long between checkpoints, and its thread ends
# after this long without one (to start again with the next write).
CHECKPOINT_SPACING = 0.05
CHECKPOINTER_IDLE = 5.0
# A log this long (64 MB of 4 KB pages) is made to start over (see Checkpointer). In a purge
# the log then stays under about 17,000 frames (70 MB); at 4,096 under 5,000, but the copy
# under the lock came often enough to show in a query's p99.
LONG_LOG_FRAMES = 16384
LONG_LOG_LOCK_WAIT = 1.0
_POLL = 0.0005  # seconds between tries of a taken file lock


class WriterLock:
    """One writer at a time: threads of this process on a lock, processes on a file lock."""

    def __init__(self, database: Path | None) -> None:
        self._threads = threading.Lock()
        self._file: BinaryIO | None = None
        if database is not None:
            self._file = open(database.with_name(database.name + ".writer-lock"), "ab")  # noqa: SIM115

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """As ``threading.Lock.acquire``: ``timeout`` None waits as long as it takes."""
        wait = (-1 if timeout is None else timeout) if blocking else 0
        deadline = time.monotonic() + (math.inf if wait < 0 else wait)
        if not self._threads.acquire(timeout=wait):
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

    @property
    def held(self) -> bool:
        """Whether a writer of this process holds the lock."""
        return self._threads.locked()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def copy_log(connection: sqlite3.Connection) -> int:
    """Copy the log into the database; returns how many frames the log holds. PASSIVE never
    waits for readers or writers: it copies what it can, and what a reader still needs waits
    for the next one."""
    try:
        _busy, frames, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error as exc:
        log.warning("checkpoint_failed", error=str(exc))
        return 0
    return int(frames)


class Checkpointer:
    """Checkpoints on a thread of its own soon after each ``wake``: no request waits for it.

    The log starts over from its beginning only when a writer begins with all of it copied.
    Copying outside the writer lock, another writer has nearly always begun by then, and
    in a purge the log grew to 60,000-70,000 frames (250-280 MB). So once the log is long,
    what came in since the copy (a few frames) is copied again under the lock: the next
    writer starts it over.
    """

    def __init__(
        self,
        database: Path,
        writers: WriterLock,
        idle: float = CHECKPOINTER_IDLE,
        *,
        long_log: int = LONG_LOG_FRAMES,
        copy: Callable[[sqlite3.Connection], int] = copy_log,
    ) -> None:
        self._database = database
        self._writers = writers
        self._idle = idle
        self._long_log = long_log
        self._copy_log = copy
        self._due = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def wake(self) -> None:
        with self._guard:
            if self._closed:
                return
            self._due.set()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="kbaudit-checkpointer", daemon=True
                )
                self._thread.start()

    def checkpoint(self, connection: Connection) -> None:
        """Copy the log now, on this connection. The caller must not hold the writer lock: a
        long log takes it for the second copy."""
        # On the driver's connection: SQLAlchemy's would open a transaction, where no
        # checkpoint can run.
        self._copy(_driver(connection))

    def _copy(self, connection: sqlite3.Connection) -> None:
        if self._copy_log(connection) < self._long_log:
            return
        if self._writers.acquire(timeout=LONG_LOG_LOCK_WAIT):
            try:
                self._copy_log(connection)
            finally:
                self._writers.release()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def close(self) -> None:
        with self._guard:
            self._closed = True
            thread = self._thread
            self._due.set()
        if thread is not None:
            thread.join()
        self._thread = None

    def _run(self) -> None:
        # A connection of the thread's own, not one of the engine's pool: a pooled one would
        # then serve readers too, and each pooled connection fills a page cache of its own
        # (64 MB; an export worker's peak RSS grew from 209 to 271 MB).
        try:
            connection = sqlite3.connect(self._database, timeout=LONG_LOG_LOCK_WAIT)
        except sqlite3.Error as exc:  # the next write starts a thread that tries again
            log.warning("checkpoint_failed", error=str(exc))
            with self._guard:
                self._thread = None
            return
        with closing(connection):
            while self._due.wait(self._idle) or not self._retire():
                if self._closed:
                    return
                self._due.clear()
                try:
                    self._copy(connection)
                except Exception as exc:  # the thread lives on: the next write wakes it again
                    log.warning("checkpoint_failed", error=str(exc))
                time.sleep(CHECKPOINT_SPACING)

    def _retire(self) -> bool:
        """End the thread if no wake came in the meantime; a later one starts another."""
        with self._guard:
            if self._due.is_set():
                return False
            self._thread = None
            return True


def _driver(connection: Connection) -> sqlite3.Connection:
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver
