"""Access-log entries: concurrent appends share commits, and none returns before its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from kbaudit.domain import KeyId, OrgId
from kbaudit.store.access_log import AccessEntry, GroupCommit


def entry(n: int) -> AccessEntry:
    return AccessEntry(OrgId(1), KeyId("k"), "query", f"route-{n}", datetime.now(UTC))


class SlowLog:
    def __init__(self) -> None:
        self.commits: list[list[str]] = []
        self.fail_next = False
        self._lock = threading.Lock()

    def write(self, entries: Sequence[AccessEntry]) -> None:
        time.sleep(0.02)
        with self._lock:
            if self.fail_next:
                self.fail_next = False
                raise OSError("disk full")
            self.commits.append([e.route for e in entries])

    def committed(self) -> list[str]:
        return [route for batch in self.commits for route in batch]


def test_concurrent_appends_share_commits_and_each_waits_for_its_own() -> None:
    log = SlowLog()
    group = GroupCommit(log.write)

    def append(n: int) -> bool:
        group.append(entry(n))
        return f"route-{n}" in log.committed()

    with ThreadPoolExecutor(16) as pool:
        answered_after_commit = list(pool.map(append, range(64)))
    assert all(answered_after_commit)
    assert sorted(log.committed()) == sorted(f"route-{n}" for n in range(64))
    assert len(log.commits) < 64


def test_a_failed_commit_fails_its_appends_and_the_next_one_goes_through() -> None:
    log = SlowLog()
    group = GroupCommit(log.write)
    log.fail_next = True
    with pytest.raises(OSError, match="disk full"):
        group.append(entry(1))
    group.append(entry(2))
    assert log.committed() == ["route-2"]
