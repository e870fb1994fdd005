"""Workers inside ``kbaudit serve``: Huey consumer threads for export parts, and a thread for
the periodic upkeep (the export sweep, the retention purge)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from huey import Huey
from huey.consumer import Consumer

log = structlog.get_logger("kbaudit.workers")


class _QuietConsumer(Consumer):  # type: ignore[misc]
    """A consumer that leaves signal handling to its host process (uvicorn owns it)."""

    def _set_signal_handlers(self) -> None:
        pass


class Sweeper:
    """Runs the sweep every ``interval`` seconds, and once at start (to recover from a crash)."""

    def __init__(self, sweep: Callable[[], object], interval: float) -> None:
        self._sweep = sweep
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kbaudit-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sweep()
            except Exception as exc:  # a failed sweep is retried at the next tick
                log.error("sweep_failed", error=repr(exc))
            self._stop.wait(self._interval)


class EmbeddedWorkers:
    def __init__(self, huey: Huey, threads: int, sweep: Callable[[], object], interval: float):
        self._consumer = _QuietConsumer(huey, workers=threads, periodic=False, worker_type="thread")
        self._sweeper = Sweeper(sweep, interval)

    def start(self) -> None:
        self._consumer.start()
        self._sweeper.start()
        log.info("workers_started")

    def stop(self) -> None:
        """Let running parts finish (their leases would hand them on otherwise), then stop."""
        self._sweeper.stop()
        self._consumer.stop(graceful=True)
        log.info("workers_stopped")
