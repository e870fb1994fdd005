"""Writers: a retrieval at a time in, batches out from the background.

A record is built around one retrieval: ``with writer.retrieval(...) as r:`` queues its
intent (``intent_recorded``) before the block and its outcome (``finalized``) after it; a
block that raises finalizes it as ``error`` with the exception's class as ``error_code``.
Batches leave when ``batch_size`` records wait or ``flush_interval`` seconds pass, and on
``flush()`` and ``close()``. A batch holds each record once: an outcome that catches up with
its intent in the queue replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import httpx2

from kbaudit_sdk._sending import AuditError, Retry, Stats, send, send_async

OnFull = Literal["block", "drop"]
_STOP = object()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Retrieval:
    """One retrieval's record, filled in as it goes. ``served``, ``missed`` and ``blocked``
    say how it ended; fields are the contract's (``set(result_count=3, ...)``)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.id = str(uuid.uuid4())  # made once: every retry and both phases use it
        self.fields: dict[str, Any] = {**fields, "id": self.id, "created_at": _now()}

    def set(self, **fields: Any) -> None:
        self.fields.update(fields)

    def served(self, refs: list[dict[str, Any]] | None = None, **fields: Any) -> None:
        self.set(retrieval_status="hit", refs=refs or [], **fields)

    def missed(self, **fields: Any) -> None:
        self.set(retrieval_status="miss", **fields)

    def blocked(self, **fields: Any) -> None:
        self.set(retrieval_status="blocked", **fields)

    def intent(self) -> dict[str, Any]:
        return {
            **self.fields,
            "audit_write_status": "intent_recorded",
            "intent_recorded_at": _now(),
        }

    def outcome(self, error: BaseException | None) -> dict[str, Any]:
        record = {**self.fields, "audit_write_status": "finalized", "finalized_at": _now()}
        if error is not None:
            record.update(retrieval_status="error", error_code=type(error).__name__[:64])
        record.setdefault("retrieval_status", "hit" if record.get("refs") else "miss")
        return record


def _batches(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each id once, at its latest state, in the order first seen."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        latest[record["id"]] = {**latest.get(record["id"], {}), **record}
    return list(latest.values())


class _Batching:
    """What both writers keep: the batch triggers, the queue policy, retries, the tally."""

    def __init__(
        self, batch_size: int, flush_interval: float, on_full: OnFull, retry: Retry | None
    ) -> None:
        self.stats = Stats()
        self._batch_size, self._interval, self._on_full = batch_size, flush_interval, on_full
        self._retry = retry or Retry()

    def _refused(self, records: list[dict[str, Any]], exc: Exception) -> None:
        self.stats.rejected += len(records)
        self.stats.errors.append(str(exc))


class AuditWriter(_Batching):
    """Writes records from a background thread. Use it as a context manager, or call
    ``close()``: what is queued is sent before it returns."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        queue_size: int = 10_000,
        on_full: OnFull = "block",
        retry: Retry | None = None,
        http: httpx2.Client | None = None,
    ) -> None:
        super().__init__(batch_size, flush_interval, on_full, retry)
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._http = http or httpx2.Client(base_url=base_url, timeout=30)
        self._http.headers["x-api-key"] = api_key
        self._flushed = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="kbaudit-writer", daemon=True)
        self._thread.start()

    def __enter__(self) -> AuditWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def retrieval(self, **fields: Any) -> Iterator[Retrieval]:
        current = Retrieval(fields)
        self.write(current.intent())
        try:
            yield current
        except BaseException as error:
            self.write(current.outcome(error))
            raise
        self.write(current.outcome(None))

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record (the contract's fields); blocks or drops when the queue is full."""
        with self._flushed:
            self._pending += 1
        try:
            self._queue.put(record, block=self._on_full == "block")
        except queue.Full:
            with self._flushed:
                self._pending -= 1
            self.stats.dropped += 1

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record queued so far has been sent (or refused)."""
        with self._flushed:
            self._flushed.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self._http.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            records, stopping = self._collect()
            if records:
                self._send(records)

    def _collect(self) -> tuple[list[dict[str, Any]], bool]:
        records: list[dict[str, Any]] = []
        while len(records) < self._batch_size:
            try:
                item = self._queue.get(timeout=self._interval if not records else 0.05)
            except queue.Empty:
                if records or self._pending == 0:
                    break
                continue
            if item is _STOP:
                return records, True
            records.append(item)
        return records, False

    def _send(self, records: list[dict[str, Any]]) -> None:
        try:
            send(self._http, _batches(records), self._retry, self.stats)
        except (AuditError, ConnectionError) as exc:
            self._refused(records, exc)
        finally:
            with self._flushed:
                self._pending -= len(records)
                self._flushed.notify_all()


class AsyncAuditWriter(_Batching):
    """``AuditWriter`` for asyncio: a background task sends the batches. Use ``async with``
    (or ``await start()`` and ``await close()``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        queue_size: int = 10_000,
        on_full: OnFull = "block",
        retry: Retry | None = None,
        http: httpx2.AsyncClient | None = None,
    ) -> None:
        super().__init__(batch_size, flush_interval, on_full, retry)
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self._http = http or httpx2.AsyncClient(base_url=base_url, timeout=30)
        self._http.headers["x-api-key"] = api_key
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncAuditWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kbaudit-writer")

    @contextlib.asynccontextmanager
    async def retrieval(self, **fields: Any) -> AsyncIterator[Retrieval]:
        current = Retrieval(fields)
        await self.write(current.intent())
        try:
            yield current
        except BaseException as error:
            await self.write(current.outcome(error))
            raise
        await self.write(current.outcome(None))

    async def write(self, record: dict[str, Any]) -> None:
        if self._on_full == "block":
            await self._queue.put(record)
            return
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.stats.dropped += 1

    async def flush(self) -> None:
        await self._queue.join()

    async def close(self) -> None:
        await self._queue.put(_STOP)
        if self._task is not None:
            await self._task
        await self._http.aclose()

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            records: list[dict[str, Any]] = []
            while len(records) < self._batch_size:
                try:
                    timeout = self._interval if not records else 0.05
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    if records:
                        break
                    continue
                if item is _STOP:
                    self._queue.task_done()
                    stopping = True
                    break
                records.append(item)
            if records:
                await self._send(records)

    async def _send(self, records: list[dict[str, Any]]) -> None:
        try:
            await send_async(self._http, _batches(records), self._retry, self.stats)
        except (AuditError, ConnectionError) as exc:
            self._refused(records, exc)
        finally:
            for _ in records:
                self._queue.task_done()
