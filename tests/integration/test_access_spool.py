"""The access log on SQLite: entries spooled to a file per process reach the log once each,
those of a process that died included. Two containers on one data folder play two processes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from kbaudit.config import Settings
from kbaudit.container import Container, build_container
from kbaudit.domain import KeyId, OrgId
from kbaudit.store.access_log import AccessEntry
from kbaudit.store.sqlite import access_spool


def entry(number: int) -> AccessEntry:
    return AccessEntry(
        org_id=OrgId(1),
        key_id=KeyId("key"),
        action="query",
        route="GET /v1/knowledge-base/audit/records",
        at=datetime(2026, 6, 1, tzinfo=UTC),
        details={"n": number},
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def open_store(data_dir: Path) -> Iterator[list[Container]]:
    """Containers on the embedded default in one data folder, closed at the end."""
    opened: list[Container] = []
    yield opened
    for container in opened:
        container.close()


def embedded(data_dir: Path, opened: list[Container]) -> Container:
    opened.append(build_container(Settings(data_dir=data_dir, queue_url="inline")))
    return opened[-1]


def logged(container: Container) -> list[int]:
    with container.store.reading() as uow:
        return sorted(e.details["n"] for e in uow.access_log.entries(OrgId(1)))


def spool_folder(data_dir: Path) -> Path:
    return data_dir / "kbaudit.db.access-spool"


def left_by_a_dead_process(data_dir: Path, name: str, numbers: range) -> Path:
    """A spool file no process holds a lock on, as a killed process leaves it."""
    path = spool_folder(data_dir) / f"{name}.spool"
    path.write_bytes(b"".join(msgspec.json.encode(entry(n)) + b"\n" for n in numbers))
    return path


def test_entries_reach_the_log_when_flushed_and_on_close(
    data_dir: Path, open_store: list[Container]
) -> None:
    first = embedded(data_dir, open_store)
    for number in range(3):
        first.store.append_access(entry(number))
    first.store.flush_access()
    assert logged(first) == [0, 1, 2]
    first.store.append_access(entry(3))
    first.close()
    open_store.remove(first)
    assert logged(embedded(data_dir, open_store)) == [0, 1, 2, 3]
    assert list(spool_folder(data_dir).iterdir()) == [], "a process that logs nothing makes no file"


def test_a_dead_processs_file_is_moved_and_a_live_ones_is_left_to_it(
    data_dir: Path, open_store: list[Container], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_spool, "MOVE_INTERVAL", 3600)  # no move but the test's
    alive, other = embedded(data_dir, open_store), embedded(data_dir, open_store)
    alive.store.append_access(entry(100))
    orphan = left_by_a_dead_process(data_dir, "orphan", range(5))
    other.store.flush_access()
    assert logged(other) == [0, 1, 2, 3, 4]  # not 100: its process holds its file
    assert not orphan.exists()
    alive.store.flush_access()
    assert logged(other) == [0, 1, 2, 3, 4, 100]


def test_a_file_left_unnamed_by_a_killed_process_is_removed_once_old(
    data_dir: Path, open_store: list[Container]
) -> None:
    container = embedded(data_dir, open_store)
    old, new = spool_folder(data_dir) / ".old.new", spool_folder(data_dir) / ".new.new"
    old.touch()
    new.touch()
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    container.store.flush_access()
    assert not old.exists()
    assert new.exists(), "one being named right now is left alone"


def test_a_file_moved_but_not_deleted_is_deleted_not_moved_again(
    data_dir: Path, open_store: list[Container]
) -> None:
    container = embedded(data_dir, open_store)
    moved = left_by_a_dead_process(data_dir, "moved", range(3))
    with container.store.writing() as uow:  # its mover died between commit and delete
        assert uow.access_log.claim_spool(moved.name)
        uow.commit()
    container.store.flush_access()
    assert logged(container) == []
    assert not moved.exists()
    left_by_a_dead_process(data_dir, "next", range(1))
    container.store.flush_access()  # the next move forgets the names whose files are gone
    with container.store.reading() as uow:
        assert uow.access_log.spools() == ["next.spool"]


def test_two_processes_appending_and_moving_at_once_log_each_entry_once(
    data_dir: Path, open_store: list[Container]
) -> None:
    processes = [embedded(data_dir, open_store) for _ in range(2)]
    per_thread = 300

    def append(container: Container, offset: int) -> None:
        for number in range(offset, offset + per_thread):
            container.store.append_access(entry(number))
            if number % 50 == 0:
                container.store.flush_access()

    threads = [
        threading.Thread(target=append, args=(container, k * per_thread))
        for k, container in enumerate(processes * 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for container in processes:
        container.store.flush_access()
    assert logged(processes[0]) == list(range(4 * per_thread))


def test_an_unreadable_line_is_skipped_and_the_rest_is_logged(
    data_dir: Path, open_store: list[Container]
) -> None:
    container = embedded(data_dir, open_store)
    torn = left_by_a_dead_process(data_dir, "torn", range(2))
    torn.write_bytes(torn.read_bytes() + b'{"org_id": 1, "key_')
    container.store.flush_access()
    assert logged(container) == [0, 1]
