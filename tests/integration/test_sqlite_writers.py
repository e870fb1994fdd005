"""SQLite's writers: one at a time across processes; no commit checkpoints under the lock.

Embedded only by nature; the files and locks are real.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, text

from kbaudit.store.engine import create_store_engine
from kbaudit.store.sqlite.writers import (
    LONG_LOG_LOCK_WAIT,
    Checkpointer,
    WriterLock,
    copy_log,
)
from kbaudit.store.unit_of_work import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    built = Store(create_store_engine(f"sqlite:///{tmp_path / 'kbaudit.db'}"))
    yield built
    built.close()


def test_a_writer_of_another_process_waits_for_the_file_lock(tmp_path: Path) -> None:
    # Two locks on one file stand for two processes: flock holds per open file, not per pid.
    database = tmp_path / "kbaudit.db"
    mine, theirs = WriterLock(database), WriterLock(database)
    assert mine.acquire(timeout=1)
    assert not theirs.acquire(timeout=0.05)
    mine.release()
    assert theirs.acquire(timeout=1)
    assert not mine.acquire(timeout=0.05)
    theirs.release()
    mine.close()
    theirs.close()


def test_writers_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "kbaudit.db")
    inside: list[int] = []
    overlaps: list[int] = []

    def write(n: int) -> None:
        for _ in range(50):
            assert lock.acquire(timeout=5)
            inside.append(n)
            if len(inside) > 1:
                overlaps.append(n)
            time.sleep(0.0001)
            inside.remove(n)
            lock.release()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    lock.close()


def _eight_megabytes(store: Store, *, bulk: bool, database: Path) -> int:
    """Write about 8 MB (over SQLite's own threshold of 1,000 pages, where a commit would
    checkpoint); returns the database file's size before the write."""
    with store.engine.begin() as connection:
        connection.execute(text("CREATE TABLE pages (body BLOB)"))
    with store.engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size_before = database.stat().st_size
    with store.writing(bulk=bulk) as uow:
        connection = uow.connection
        assert connection is not None
        for _ in range(2000):
            connection.execute(text("INSERT INTO pages VALUES (randomblob(4000))"))
        uow.commit()
        assert database.stat().st_size == size_before, "the commit checkpointed"
    return size_before


def test_a_bulk_write_checkpoints_after_its_commit_not_inside(store: Store, tmp_path: Path) -> None:
    database = tmp_path / "kbaudit.db"
    size_before = _eight_megabytes(store, bulk=True, database=database)
    assert database.stat().st_size >= size_before + 8_000_000, "no checkpoint after the write"


def test_the_checkpointer_copies_a_plain_write_soon_after(store: Store, tmp_path: Path) -> None:
    database = tmp_path / "kbaudit.db"
    # A pooled connection the checkpointer used would serve readers afterwards, and fill a
    # page cache of its own: the checkpointer must keep to a connection of its own.
    pooled_by: list[str] = []
    event.listen(
        store.engine, "checkout", lambda *_: pooled_by.append(threading.current_thread().name)
    )
    size_before = _eight_megabytes(store, bulk=False, database=database)
    deadline = time.monotonic() + 10
    while database.stat().st_size < size_before + 8_000_000:
        assert time.monotonic() < deadline, "the checkpointer never copied the write"
        time.sleep(0.02)
    assert pooled_by, "the listener saw no checkout at all"
    assert "kbaudit-checkpointer" not in pooled_by
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0


def test_the_checkpointer_thread_ends_when_idle_and_comes_back(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path / "kbaudit.db", WriterLock(None), idle=0.1)
    checkpointer.wake()
    assert checkpointer.running
    deadline = time.monotonic() + 5
    while checkpointer.running:
        assert time.monotonic() < deadline, "the idle thread never ended"
        time.sleep(0.02)
    checkpointer.wake()
    assert checkpointer.running
    checkpointer.close()
    assert not checkpointer.running
    checkpointer.wake()  # after close: ignored
    assert not checkpointer.running


def test_a_checkpointer_that_cannot_open_the_database_tries_again_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opening = sqlite3.connect
    tries: list[Path] = []

    def counted(database: Path, **options: float) -> sqlite3.Connection:
        tries.append(database)
        return opening(database, **options)

    monkeypatch.setattr(sqlite3, "connect", counted)
    checkpointer = Checkpointer(tmp_path / "missing" / "kbaudit.db", WriterLock(None))
    for attempt in (1, 2):
        checkpointer.wake()
        deadline = time.monotonic() + 5
        while checkpointer.running:
            assert time.monotonic() < deadline, "the failed thread never let go"
            time.sleep(0.02)
        assert len(tries) == attempt
    checkpointer.close()


def _log_frames(store: Store) -> int:
    with store.engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        return int(driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def test_a_long_log_is_copied_again_under_the_writer_lock(store: Store, tmp_path: Path) -> None:
    with store.engine.begin() as connection:
        connection.execute(text("CREATE TABLE pages (body BLOB)"))
        # About 5,000 pages: past the length (made shorter here) at which the log starts over.
        connection.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)"
                " INSERT INTO pages SELECT randomblob(4000) FROM n"
            )
        )
    assert _log_frames(store) >= 5000
    writers = WriterLock(None)
    locked_during_copies: list[bool] = []

    def another_writer_commits_after_the_first_copy(connection: sqlite3.Connection) -> int:
        frames = copy_log(connection)
        locked_during_copies.append(writers.held)
        if len(locked_during_copies) == 1:
            with store.engine.begin() as theirs:
                theirs.execute(text("INSERT INTO pages VALUES (x'00')"))
        return frames

    # About 5,000 frames: past a long log made shorter here.
    checkpointer = Checkpointer(
        tmp_path / "kbaudit.db",
        writers,
        long_log=4096,
        copy=another_writer_commits_after_the_first_copy,
    )
    with store.engine.connect() as connection:
        checkpointer.checkpoint(connection)
    assert locked_during_copies == [False, True]
    assert not writers.held
    with store.engine.begin() as connection:  # the next writer
        connection.execute(text("INSERT INTO pages VALUES (x'01')"))
    assert _log_frames(store) < 10, "the log did not start over"


def test_a_short_log_is_copied_once_outside_the_lock(store: Store, tmp_path: Path) -> None:
    with store.engine.begin() as connection:
        connection.execute(text("CREATE TABLE pages (body BLOB)"))
        connection.execute(text("INSERT INTO pages VALUES (randomblob(4000))"))
    writers = WriterLock(None)
    assert writers.acquire(timeout=1)  # held elsewhere: a copy that needed it would wait
    started = time.monotonic()
    with store.engine.connect() as connection:
        Checkpointer(tmp_path / "kbaudit.db", writers).checkpoint(connection)
    assert time.monotonic() - started < LONG_LOG_LOCK_WAIT
    assert _log_frames(store) < 10
    writers.release()
