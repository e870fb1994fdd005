"""The upkeep thread yields the CPU to requests and export parts."""

from __future__ import annotations

import os
import threading

from kbaudit.workers.consumer import UPKEEP_NICENESS, Sweeper


def niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_upkeep_runs_at_a_lower_priority_than_the_threads_that_started_it() -> None:
    before = niceness()
    seen: list[int] = []
    swept = threading.Event()

    def sweep() -> None:
        seen.append(niceness())
        swept.set()

    sweeper = Sweeper(sweep, interval=60)
    sweeper.start()
    assert swept.wait(10)
    sweeper.stop()
    assert seen == [min(19, before + UPKEEP_NICENESS)]
    assert niceness() == before, "only the upkeep's thread yields"
