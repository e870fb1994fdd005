"""Sending one batch of records, retried the way the server asks: its ``retryable`` and
``retry_after``, 429 and 5xx, and connections that fail. The records' ids were made once, so
a batch sent twice is written once (the second time each record comes back ``unchanged``)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2

RECORDS = "/v1/knowledge-base/audit/retrievals"


class AuditError(Exception):
    """The server refused a request for good (a 4xx that retrying cannot change)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('error', '')}: {body.get('message', body)}")
        self.status = status
        self.body = body


@dataclass
class Retry:
    """Exponential backoff with full jitter, capped, for at most ``attempts`` tries."""

    attempts: int = 8
    first_delay: float = 0.2
    max_delay: float = 30.0

    def delay(self, attempt: int, asked: float | None) -> float:
        if asked is not None:
            return min(asked, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.first_delay * 2**attempt))


@dataclass
class Stats:
    """What happened to the records handed to a writer."""

    sent: int = 0  # written by the server (created, updated or unchanged)
    dropped: int = 0  # refused at the queue, when it was full and on_full="drop"
    rejected: int = 0  # refused by the server for good
    retries: int = 0
    errors: list[str] = field(default_factory=list)


def _verdict(response: httpx2.Response) -> tuple[bool, float | None]:
    """(worth retrying, seconds the server asked to wait)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    after = body.get("retry_after") if isinstance(body, dict) else None
    header = response.headers.get("retry-after")
    if after is None and header and header.isdigit():
        after = float(header)
    retryable = response.status_code in (408, 429) or response.status_code >= 500
    if isinstance(body, dict) and "retryable" in body:
        retryable = bool(body["retryable"]) or response.status_code >= 500
    return retryable, after


def _refusal(response: httpx2.Response) -> AuditError:
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:300]}
    return AuditError(response.status_code, body if isinstance(body, dict) else {"body": body})


def _judge(response: httpx2.Response | None, count: int, stats: Stats) -> tuple[bool, float | None]:
    """(the batch is written, seconds the server asked to wait); raises on a refusal that
    retrying cannot change. ``None``: the connection failed."""
    if response is None:
        return False, None
    if response.is_success:
        stats.sent += count
        return True, None
    retryable, asked = _verdict(response)
    if not retryable:
        raise _refusal(response)
    return False, asked


def send(client: httpx2.Client, items: list[dict[str, Any]], retry: Retry, stats: Stats) -> None:
    for attempt in range(retry.attempts):
        try:
            response: httpx2.Response | None = client.post(RECORDS, json={"items": items})
        except httpx2.TransportError:
            response = None
        done, asked = _judge(response, len(items), stats)
        if done:
            return
        if attempt + 1 < retry.attempts:
            stats.retries += 1
            time.sleep(retry.delay(attempt, asked))
    raise ConnectionError(f"the batch was not accepted after {retry.attempts} attempts")


async def send_async(
    client: httpx2.AsyncClient, items: list[dict[str, Any]], retry: Retry, stats: Stats
) -> None:
    for attempt in range(retry.attempts):
        try:
            response: httpx2.Response | None = await client.post(RECORDS, json={"items": items})
        except httpx2.TransportError:
            response = None
        done, asked = _judge(response, len(items), stats)
        if done:
            return
        if attempt + 1 < retry.attempts:
            stats.retries += 1
            await asyncio.sleep(retry.delay(attempt, asked))
    raise ConnectionError(f"the batch was not accepted after {retry.attempts} attempts")
