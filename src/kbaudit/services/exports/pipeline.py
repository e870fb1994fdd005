"""A part's two halves on two threads: reading and rendering documents, and compressing,
encrypting and storing the result.

zstd compresses on a thread of its own (crypto/files.py) and hashing releases the GIL, so the
second half costs the first little Python time. The handover is a bounded queue of a few
batches, so memory stays flat. Reading on a third thread was tried and dropped: SQLite takes
the GIL back after every row, and behind a thread rendering CSV it waited up to 5 ms each
time (a part ran at a quarter of its speed).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

Item = TypeVar("Item")
DEPTH = 2
_END = object()


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

    @property
    def running(self) -> bool:
        """Whether its thread is still at work."""
        return self._thread.is_alive()

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
