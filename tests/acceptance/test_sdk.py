"""The writer SDK (``sdk/``, ``kbaudit_sdk``) against a real ``kbaudit serve``, directly and
through a proxy that fails the way networks and overloaded servers do."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pyrage
import pytest
from pyrage import x25519

from kbaudit_sdk import AsyncAuditWriter, AuditReader, AuditWriter, Retry
from tests.acceptance.conftest import Cli, Serve

FAST = Retry(attempts=12, first_delay=0.01, max_delay=0.2)


class FlakyProxy:
    """Forwards to ``upstream``, but first answers ``failures`` requests with a 503 (and cuts
    ``cuts`` connections without an answer); ``delay`` slows every forwarded request."""

    def __init__(self, upstream: str, failures: int = 0, cuts: int = 0, delay: float = 0) -> None:
        self.failures, self.cuts, self.delay, self.seen = failures, cuts, delay, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                proxy.seen += 1
                if proxy.cuts > 0:
                    proxy.cuts -= 1
                    self.connection.close()
                    return
                if proxy.failures > 0:
                    proxy.failures -= 1
                    self._answer(503, b'{"error":"overloaded","retryable":true,"retry_after":0.05}')
                    return
                time.sleep(proxy.delay)
                answer = httpx2.post(
                    upstream + self.path, content=body, headers=dict(self.headers), timeout=30
                )
                self._answer(answer.status_code, answer.content)

            def _answer(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def running(cli: Cli, serve: Callable[[], Serve]) -> tuple[str, str]:
    key = cli.key("acme", "kb_audit:read,kb_audit:write,kb_audit:export")
    return serve().url, key


@pytest.fixture
def proxy_for(running: tuple[str, str]) -> Iterator[Callable[..., FlakyProxy]]:
    made: list[FlakyProxy] = []

    def make(**failing: Any) -> FlakyProxy:
        made.append(FlakyProxy(running[0], **failing))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def stored(url: str, key: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    start = (now - timedelta(hours=1)).isoformat()
    with AuditReader(url, key) as reader:
        return list(reader.records(start, (now + timedelta(hours=1)).isoformat()))


def test_a_retrieval_is_written_twice_and_read_once(running: tuple[str, str]) -> None:
    url, key = running
    kb = str(uuid.uuid4())
    with AuditWriter(url, key, batch_size=16, flush_interval=0.1) as audit:
        for n in range(40):
            with audit.retrieval(caller="support-bot", scopes=[{"knowledge_base_id": kb}]) as r:
                if n % 2:
                    r.served(refs=[{"chunk_id": str(uuid.uuid4()), "rank": 1}], result_count=1)
                else:
                    r.missed(result_count=0)
        with pytest.raises(LookupError), audit.retrieval(caller="support-bot") as failing:
            raise LookupError("the index is down")
    assert audit.stats.rejected == 0
    rows = {row["id"]: row for row in stored(url, key)}
    assert len(rows) == 41
    assert {row["audit_write_status"] for row in rows.values()} == {"finalized"}
    assert sum(row["retrieval_status"] == "hit" for row in rows.values()) == 20
    with AuditReader(url, key) as reader:
        detail = reader.record(failing.id)["log"]
    assert (detail["retrieval_status"], detail["error_code"]) == ("error", "LookupError")
    assert detail["intent_recorded_at"] < detail["finalized_at"]


def test_nothing_is_lost_or_doubled_when_the_server_fails_then_recovers(
    running: tuple[str, str], proxy_for: Callable[..., FlakyProxy]
) -> None:
    url, key = running
    proxy = proxy_for(failures=5, cuts=2)
    ids = []
    with AuditWriter(proxy.url, key, batch_size=10, flush_interval=0.05, retry=FAST) as audit:
        for _ in range(30):
            with audit.retrieval(caller="agent") as r:
                ids.append(r.id)
                r.missed()
    assert audit.stats.retries >= 7
    assert (audit.stats.rejected, audit.stats.errors) == (0, [])
    rows = stored(url, key)
    assert sorted(row["id"] for row in rows) == sorted(ids)


def test_a_full_queue_drops_and_counts_when_asked_to(
    running: tuple[str, str], proxy_for: Callable[..., FlakyProxy]
) -> None:
    url, key = running
    slow = proxy_for(delay=0.3)
    options: dict[str, Any] = {"batch_size": 5, "queue_size": 5, "on_full": "drop"}
    with AuditWriter(slow.url, key, flush_interval=0.05, **options) as audit:
        for _ in range(60):
            audit.write({"id": str(uuid.uuid4()), "created_at": datetime.now(UTC).isoformat()})
    assert audit.stats.dropped > 0
    assert audit.stats.sent + audit.stats.dropped == 60
    assert len(stored(url, key)) == audit.stats.sent


def test_the_async_writer(running: tuple[str, str], proxy_for: Callable[..., FlakyProxy]) -> None:
    url, key = running
    proxy = proxy_for(failures=2)

    async def write() -> list[str]:
        ids = []
        async with AsyncAuditWriter(proxy.url, key, batch_size=7, retry=FAST) as audit:
            for _ in range(20):
                async with audit.retrieval(caller="async-agent") as r:
                    ids.append(r.id)
                    r.served(refs=[])
        assert audit.stats.retries >= 2
        return ids

    ids = asyncio.run(write())
    assert sorted(row["id"] for row in stored(url, key)) == sorted(ids)


def test_the_reader_exports_and_checks_the_files(running: tuple[str, str], tmp_path: Path) -> None:
    url, key = running
    with AuditWriter(url, key, flush_interval=0.05) as audit:
        for _ in range(25):
            with audit.retrieval(caller="agent") as r:
                r.missed()
    now = datetime.now(UTC)
    with AuditReader(url, key) as reader:
        export_id = reader.export(
            (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=1)).isoformat()
        )
        seen: list[int] = []
        job = reader.wait(export_id, lambda j: seen.append(j["progress"]["rows_written"]))
        assert (job["status"], job["total_rows"]) == ("succeeded", 25)
        saved = reader.download(export_id, tmp_path / "out")
    assert [p.name for p in saved] == [
        "kb-audit-00001.ndjson",
        "manifest.json",
        "manifest.json.sig",
    ]
    assert len((tmp_path / "out" / "kb-audit-00001.ndjson").read_text().splitlines()) == 25


def test_the_reader_takes_an_export_to_age_recipients(
    running: tuple[str, str], tmp_path: Path
) -> None:
    """The files arrive as age files, checked against sha256_delivered; only the
    recipient's identity opens them."""
    url, key = running
    identity = x25519.Identity.generate()
    with AuditWriter(url, key, flush_interval=0.05) as audit:
        for _ in range(5):
            with audit.retrieval(caller="agent") as r:
                r.missed()
    now = datetime.now(UTC)
    with AuditReader(url, key) as reader:
        export_id = reader.export(
            (now - timedelta(hours=1)).isoformat(),
            (now + timedelta(hours=1)).isoformat(),
            recipients=[str(identity.to_public())],
        )
        assert reader.wait(export_id)["status"] == "succeeded"
        saved = reader.download(export_id, tmp_path / "out")
    assert saved[0].name == "kb-audit-00001.ndjson.age"
    assert len(pyrage.decrypt(saved[0].read_bytes(), [identity]).splitlines()) == 5
