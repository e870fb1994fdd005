"""Write-behind: items arrive in order, and a failed write surfaces in the caller's thread."""

from __future__ import annotations

import pytest

from kbaudit.services.exports.pipeline import WriteBehind


def test_items_are_written_in_order_before_the_block_ends() -> None:
    written: list[int] = []
    with WriteBehind(written.append) as behind:
        for n in range(100):
            behind.put(n)
    assert written == list(range(100))


def put_all(behind: WriteBehind[int], count: int) -> None:
    with behind:
        for n in range(count):
            behind.put(n)


def test_a_failed_write_is_raised_in_the_caller_and_later_items_are_dropped() -> None:
    written: list[int] = []

    def write(n: int) -> None:
        if n == 3:
            raise OSError("disk full")
        written.append(n)

    with pytest.raises(OSError, match="disk full"):
        put_all(WriteBehind(write), 10)
    assert written == [0, 1, 2]


def fail_in_the_caller(behind: WriteBehind[int]) -> None:
    with behind:
        behind.put(1)
        raise KeyError("caller")


def test_a_failure_in_the_caller_still_stops_the_thread() -> None:
    behind: WriteBehind[int] = WriteBehind(lambda _n: None)
    with pytest.raises(KeyError):
        fail_in_the_caller(behind)
    assert not behind.running
