"""Export workers: Huey consumer threads for export parts, and a thread for the periodic
upkeep (the export sweep, the retention purge). ``kbaudit serve`` runs them inside the API in
the embedded default; ``kbaudit worker`` runs them on their own in the scale-out mode."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import structlog
from huey import Huey
from huey.consumer import Consumer

log = structlog.get_logger("kbaudit.workers")

UPKEEP_NICENESS = 10
# An idle consumer of a polled queue (SQLite, the embedded default) waits longer after each
# empty look: 0.1 s, growing by 15% a time. Huey's own cap is 10 s, so an export asked for
# after a quiet minute sat that long before it started. Redis blocks on its queue instead.
IDLE_POLL_SECONDS = 0.5


class _QuietConsumer(Consumer):  # type: ignore[misc]
    """A consumer that leaves signal handling to its host process."""

    def _set_signal_handlers(self) -> None:
        pass


class Sweeper:
    """Runs ``sweep`` every ``interval`` seconds, and once at start (to recover from a crash),
    on a thread ``niceness`` steps behind the others."""

    def __init__(
        self,
        sweep: Callable[[], object],
        interval: float,
        name: str = "kbaudit-sweeper",
        niceness: int = UPKEEP_NICENESS,
    ) -> None:
        self._sweep = sweep
        self._interval = interval
        self._niceness = niceness
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        if self._niceness:
            lower_thread_priority(self._niceness)
        while not self._stop.is_set():
            try:
                self._sweep()
            except Exception as exc:  # a failed sweep is retried at the next tick
                log.error("sweep_failed", task=self._thread.name, error=repr(exc))
            self._stop.wait(self._interval)


def lower_thread_priority(by: int) -> None:
    """Let this thread have a core only after the others: the upkeep (a purge most of all) is
    background work, and on SQLite the queries it competes with are what users wait for.
    Linux keeps a niceness per thread; elsewhere this may do nothing."""
    thread = threading.get_native_id()
    try:
        os.setpriority(
            os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + by)
        )
    except OSError as exc:
        log.info("priority_unchanged", error=str(exc))


class Workers:
    """Consumer threads for the queue (``consumer``, Huey's), ``upkeep`` every ``interval``
    seconds, and ``deliver`` (the outbox) every ``delivery_interval`` seconds: polling the
    outbox, not a queue message, is what makes a delivery survive any crash."""

    def __init__(
        self,
        huey: Huey,
        threads: int,
        upkeep: Callable[[], object],
        interval: float,
        deliver: Callable[[], object],
        delivery_interval: float,
        after_delivering: Callable[[], object] = lambda: None,
    ):
        self.consumer = _QuietConsumer(
            huey, workers=threads, periodic=False, worker_type="thread", max_delay=IDLE_POLL_SECONDS
        )
        self._sweeper = Sweeper(upkeep, interval)
        self._deliverer = Sweeper(deliver, delivery_interval, "kbaudit-delivery", niceness=0)
        self._after_delivering = after_delivering

    def start(self) -> None:
        self.consumer.start()
        self._sweeper.start()
        self._deliverer.start()
        log.info("workers_started")

    def stop(self) -> None:
        """Let running parts finish (their leases would hand them on otherwise), then stop."""
        self._deliverer.stop()
        self._after_delivering()  # the attempts in flight end, and are recorded
        self._sweeper.stop()
        self.consumer.stop(graceful=True)
        log.info("workers_stopped")
