"""An idle worker of the embedded default keeps looking for work often enough that an export
starts soon after it is asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbaudit.workers.consumer import IDLE_POLL_SECONDS, Workers
from kbaudit.workers.queue import build_huey


def test_an_idle_worker_of_a_polled_queue_waits_at_most_the_idle_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huey = build_huey(None, tmp_path)  # SQLite: polled, unlike Redis
    assert not huey.storage.blocking
    workers = Workers(huey, 1, lambda: None, 3600, lambda: None, 3600)
    worker = workers.consumer._create_worker()  # Huey's: a worker as its consumer makes one
    waits: list[float] = []
    monkeypatch.setattr(worker.stop_flag, "wait", waits.append)
    for _ in range(60):  # a quiet minute and more, under Huey's own backoff
        worker.loop()
    assert len(waits) == 60, "each empty look is followed by a wait"
    assert waits[0] < waits[20], "the waits still grow while idle"
    assert max(waits) == pytest.approx(IDLE_POLL_SECONDS)
