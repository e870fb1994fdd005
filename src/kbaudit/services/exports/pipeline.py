"""A part's three stages on three threads: reading documents, rendering them, and compressing,
encrypting and storing the result.

Reading (SQLite's or PostgreSQL's own work) and compressing (zstd) release the GIL; rendering
CSV is Python. In turns, a part took as long as all three together; overlapped, about as long
as the slowest. Each handover is a bounded queue of a few batches, so memory stays flat.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from types import TracebackType
from typing import Generic, TypeVar

Item = TypeVar("Item")
DEPTH = 2
_END = object()
_POLL = 0.1


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(items: Iterator[Item], depth: int = DEPTH) -> Generator[Item, None, None]:
    """``items``, drawn on a thread of their own up to ``depth`` ahead of the consumer. When
    the consumer stops early, the thread stops and ``items`` is closed."""
    handover: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()

    def hand(value: object) -> bool:
        while not stop.is_set():
            try:
                handover.put(value, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand(item):
                    return
            hand(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            hand(_Failure(exc))

    thread = threading.Thread(target=produce, name="kbaudit-read-ahead", daemon=True)
    thread.start()
    try:
        while (value := handover.get()) is not _END:
            if isinstance(value, _Failure):
                raise value.error
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


class WriteBehind(Generic[Item]):
    """Calls ``write`` on a thread of its own, up to ``depth`` items behind the caller. A
    failure of ``write`` is raised by the next ``put`` or by leaving the block."""

    def __init__(self, write: Callable[[Item], object], depth: int = DEPTH) -> None:
        self._write = write
        self._handover: queue.Queue[object] = queue.Queue(depth)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kbaudit-write-behind", daemon=True)

    def __enter__(self) -> WriteBehind[Item]:
        self._thread.start()
        return self

    def put(self, item: Item) -> None:
        if self._failure is not None:
            raise self._failure
        self._handover.put(item)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._handover.put(_END)
        self._thread.join()
        if exc is None and self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        while (item := self._handover.get()) is not _END:
            if self._failure is None:  # after a failure, only drain
                try:
                    self._write(item)  # type: ignore[arg-type]
                except BaseException as exc:  # raised in the caller's thread
                    self._failure = exc
