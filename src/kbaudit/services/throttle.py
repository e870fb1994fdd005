"""Failed authentications, counted per client address and per key id: past a limit within a
window, that address (or that key id with a wrong secret) is refused with a 429 until the
window ends. Counted in this process only: each ``serve`` process keeps its own counts."""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_TRACKED = 10_000


class FailureThrottle:
    """Fixed windows of ``window`` seconds; a name past ``limit`` failures in its window is
    throttled until the window ends. At most ``MAX_TRACKED`` names are kept: past that the
    counts start over, so that made-up names cannot fill the memory."""

    def __init__(
        self, limit: int = 20, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._counts: dict[str, tuple[float, int]] = {}

    def wait(self, name: str) -> float | None:
        """The seconds until ``name`` may try again, or None when it may now."""
        started, count = self._counts.get(name, (0.0, 0))
        left = started + self._window - self._clock()
        return left if count >= self._limit and left > 0 else None

    @property
    def tracked(self) -> int:
        """How many names are counted now."""
        return len(self._counts)

    def failed(self, name: str) -> None:
        now = self._clock()
        started, count = self._counts.get(name, (now, 0))
        if now - started >= self._window:
            started, count = now, 0
        if len(self._counts) >= MAX_TRACKED and name not in self._counts:
            self._counts.clear()
        self._counts[name] = (started, count + 1)
