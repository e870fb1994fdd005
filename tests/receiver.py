"""A real HTTP receiver for webhook tests, on 127.0.0.1: it records what it is sent and
answers as the test scripts it to."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived


Answer = int | str | threading.Barrier
HUGE = 400 * 1024 * 1024


class Receiver:
    """Answers each POST with the next of ``answers`` (the last one repeats): a status
    code, ``"slow"`` (waits ``slow_seconds``, then 200), ``"redirect:URL"``, a barrier
    (200 once as many requests wait at it as it has parties, 500 after 5 s without),
    ``"drip"`` (a header a byte every 0.2 s, for up to a minute) or ``"huge"`` (200 with a
    body of 400 MiB; ``sent`` counts the bytes the sender took)."""

    def __init__(
        self,
        answers: list[Answer],
        slow_seconds: float = 3.0,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answers = list(answers)
        self.slow_seconds = slow_seconds
        self.received: list[Received] = []
        self.sent = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                arrived = Received(headers, body, time.time())
                receiver.received.append(arrived)
                answer = receiver._next()
                if isinstance(answer, threading.Barrier):
                    try:
                        answer.wait(timeout=5)
                        answer = 200
                    except threading.BrokenBarrierError:
                        answer = 500
                if answer == "slow":
                    time.sleep(receiver.slow_seconds)
                    answer = 200
                if answer in ("drip", "huge"):
                    self._hostile(str(answer))
                    return
                if isinstance(answer, str) and answer.startswith("redirect:"):
                    self.send_response(302)
                    self.send_header("location", answer.removeprefix("redirect:"))
                else:
                    self.send_response(int(answer))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _hostile(self, answer: str) -> None:
                self.close_connection = True
                try:
                    if answer == "drip":
                        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                        for byte in b"x-slow: " + b"." * 300:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.2)
                        return
                    self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % HUGE)
                    chunk = b"x" * 65536
                    while receiver.sent < HUGE:
                        self.wfile.write(chunk)
                        receiver.sent += len(chunk)
                except OSError:
                    pass  # the sender hung up, as it should

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}/hook"

    def _next(self) -> Answer:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def start(self) -> Receiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def receiving(
    answers: list[Answer],
    slow_seconds: float = 3.0,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Receiver]:
    receiver = Receiver(answers, slow_seconds, host, port, tls).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def signed_by(secret: str, received: Received) -> bool:
    """Whether the request carries the Standard Webhooks signature ``secret`` makes."""
    headers = received.headers
    sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    expected = Webhook(secret).sign(headers["webhook-id"], sent_at, received.body.decode())
    return expected in headers["webhook-signature"].split(" ")


def rebinding(monkeypatch: pytest.MonkeyPatch, name: str, first: str, then: str) -> list[str]:
    """Make the process's resolver answer ``first`` for ``name`` the first time it is asked,
    and ``then`` every time after, as a name an attacker controls would (DNS rebinding);
    other names resolve as ever. Returns the answers given, as they are given."""
    real = socket.getaddrinfo
    given: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        given.append(then if given else first)
        return real(given[-1], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given
