"""What a hostile client can make a real ``kbaudit serve`` hold: no body before its key is
known good, no more of a body than its route takes, no header past 64 KiB, no request body
for longer than the body timeout, and no more memory than a small multiple of a body."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from tests.acceptance.conftest import RECENT_END, Cli, Serve

RECORDS = "/v1/knowledge-base/audit/retrievals"
BODY_ROUTES = [
    ("POST", RECORDS),
    ("POST", "/v1/knowledge-base/audit/exports"),
    ("PUT", "/v1/knowledge-base/retention-policy"),
    ("POST", "/v1/knowledge-base/audit/webhooks"),
    ("PUT", "/v1/knowledge-base/audit/destinations/mine"),
]
MIB = 1024 * 1024


def head(method: str, route: str, length: int, key: str | None = None) -> bytes:
    lines = [f"{method} {route} HTTP/1.1", "Host: 127.0.0.1", "content-type: application/json"]
    lines += [f"content-length: {length}"] + ([f"x-api-key: {key}"] if key else [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer_to(port: int, request: bytes, timeout: float = 10) -> bytes:
    """The server's answer to ``request`` (which may promise more than it sends): its head
    and as much of its body as it says it has."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        received = b""
        try:
            while not _whole(received) and (chunk := connection.recv(65536)):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return received


def answers_until_closed(port: int, request: bytes) -> bytes:
    """Every answer to ``request`` (pipelined requests), until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        with contextlib.suppress(OSError):  # refused before the whole request was read
            connection.sendall(request)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return received


def _whole(answer: bytes) -> bool:
    head, blank, body = answer.partition(b"\r\n\r\n")
    if not blank:
        return False
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@pytest.fixture
def running(cli: Cli, serve: Callable[..., Serve]) -> tuple[Serve, str]:
    cli.env |= {"KBAUDIT_BODY_TIMEOUT_SECONDS": "2"}
    key = cli.key("acme", "kb_audit:write,kb_audit:export,kb_audit:admin")
    return serve(), key


def test_a_body_is_not_read_before_the_key_is_known_good(running: tuple[Serve, str]) -> None:
    server, _ = running
    for method, route in BODY_ROUTES:
        started = time.monotonic()
        # 96 MiB promised, 1 KiB sent: the answer comes without the rest.
        answer = answer_to(server.port, head(method, route, 96 * MIB) + b"{" * 1024)
        assert answer.startswith(b"HTTP/1.1 401"), (route, answer[:200])
        assert b"authentication_required" in answer
        assert time.monotonic() - started < 1.5, route


@pytest.mark.parametrize(
    ("method", "route", "limit"),
    [
        ("POST", "/v1/knowledge-base/audit/exports", MIB),
        ("PUT", "/v1/knowledge-base/retention-policy", 16 * 1024),
        ("POST", "/v1/knowledge-base/audit/webhooks", 64 * 1024),
        ("PUT", "/v1/knowledge-base/audit/destinations/mine", 64 * 1024),
    ],
)
def test_each_route_takes_bodies_fitted_to_it(
    running: tuple[Serve, str], method: str, route: str, limit: int
) -> None:
    server, key = running
    declared = answer_to(server.port, head(method, route, limit + 1, key))
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
    assert f"at most {limit} bytes".encode() in declared
    # A body that does not say its length is read no further than the limit.
    response = httpx2.request(
        method,
        server.url + route,
        content=iter([b" " * 4096] * (limit // 4096 + 2)),
        headers={"x-api-key": key, "content-type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"


HEADERS_PAST_64_KIB = {
    "a line that never ends": b"x-big: " + b"a" * (2 * MIB),
    # Whole within one read, they went by the byte count: 200 (the soak run's probe).
    "80 KiB, ended, in one packet": b"x-big: " + b"a" * (80 * 1024) + b"\r\n\r\n",
    "many small ones": b"".join(b"x-%d: %s\r\n" % (n, b"a" * 100) for n in range(800)) + b"\r\n",
}


@pytest.mark.parametrize("headers", HEADERS_PAST_64_KIB.values(), ids=HEADERS_PAST_64_KIB.keys())
def test_headers_past_64_kib_are_refused(running: tuple[Serve, str], headers: bytes) -> None:
    server, _ = running
    answer = answer_to(server.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert b"HTTP/1.1 400" not in answer
    pipelined = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2
    answer = answers_until_closed(server.port, pipelined + b"GET /healthz HTTP/1.1\r\n" + headers)
    # The connection closes with the 431: answers still due to the first two may be lost.
    assert b"HTTP/1.1 431" in answer, answer[:300]
    assert answer.count(b"HTTP/1.1 200") < 3
    assert httpx2.get(f"{server.url}/healthz").status_code == 200


def test_a_body_sent_a_byte_at_a_time_is_bounded_as_a_whole(running: tuple[Serve, str]) -> None:
    """Each byte comes well inside the 2 s body timeout; the body as a whole does not."""
    server, key = running
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(head("POST", RECORDS, 100, key))
        started = time.monotonic()
        answer = b""
        for _ in range(40):
            try:
                slow.sendall(b" ")
                slow.settimeout(0.25)
                answer += slow.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert 1.8 < time.monotonic() - started < 4


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def a_record() -> bytes:
    return b'{"id":"%s","created_at":"%s","retrieval_status":"hit"}' % (
        str(uuid.uuid4()).encode(),
        RECENT_END.strftime("%Y-%m-%dT%H:%M:%SZ").encode(),  # the body stays under 32 MiB
    )


HEAVY_BODIES = {
    # 30 MiB of empty objects held 1 GB as Python objects before it was refused.
    "empty objects": b'{"items":[' + b"{}," * (10 * MIB) + b"{}]}",
    # Records are decoded before they can be counted: the worst case found.
    "too many small records": b'{"items":[' + b",".join([a_record()] * 300_000) + b"]}",
}


@pytest.mark.parametrize("body", HEAVY_BODIES.values(), ids=HEAVY_BODIES.keys())
def test_a_write_holds_a_small_multiple_of_its_body(
    running: tuple[Serve, str], body: bytes
) -> None:
    server, key = running
    assert server.process is not None
    before = peak_rss(server.process.pid)
    response = httpx2.post(
        server.url + RECORDS,
        content=body,
        headers={"x-api-key": key, "content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 422, response.text[:300]
    grown = peak_rss(server.process.pid) - before
    print(f"peak grew {grown / MIB:.0f} MiB for a {len(body) / MIB:.0f} MiB body")
    assert grown < 10 * len(body), f"{grown / MIB:.0f} MiB for a {len(body) / MIB:.0f} MiB body"
