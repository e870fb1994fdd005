"""Sending to the address that was checked, whatever the name answers next.

HTTP clients resolve a URL's name again when they connect; between kbaudit's check and that
second lookup, the name may have come to answer with an address the check would have refused
(DNS rebinding). So a client is given a proxy of kbaudit's own, on 127.0.0.1, that takes
requests for the checked host and port alone and opens every connection to the checked
address. The client keeps the name for everything else: ``CONNECT host:port`` and its own
TLS to the host for https (SNI and the certificate check are the name's), the absolute URL
and ``Host`` for plain http. httpx2 and obstore both take a proxy URL.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from types import TracebackType
from urllib.parse import urlsplit

from kbaudit.services.delivery.addresses import Target

MAX_HEAD = 64 * 1024
CHUNK = 64 * 1024
IDLE_MARGIN_SECONDS = 5.0


class Tunnel:
    """``with Tunnel(target, timeout) as proxy_url:`` a proxy for ``target`` while the block
    runs. ``timeout`` is the client's: it bounds connecting, and the tunnel waits for bytes
    a little longer than that, so that the client's own timeout is the one that fires.

    ``deadline`` bounds the whole block: when it passes, every connection is cut. A client's
    timeouts bound each read, and a receiver sending a byte just inside each would hold
    the client as long as it liked; ``cut_off`` then says that is what happened.

    ``answer_bytes`` bounds what one connection brings back from the receiver: the client
    may read a whole answer into memory (obstore does, for an error's body), and the
    receiver is the customer's, or whoever their name points at."""

    def __init__(
        self,
        target: Target,
        timeout: float,
        *,
        deadline: float | None = None,
        answer_bytes: int | None = None,
    ) -> None:
        self._target = target
        self._answer_bytes = answer_bytes
        self._timeout = timeout
        self._idle = timeout + IDLE_MARGIN_SECONDS
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._accept, name="kbaudit-tunnel", daemon=True)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._timer = threading.Timer(deadline, self._cut) if deadline else None
        self.cut_off = False

    def __enter__(self) -> str:
        self._thread.start()
        if self._timer is not None:
            self._timer.start()
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # Shutting the listener down wakes its accept at once; connections still open end
        # with their client, or after the idle wait.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # shut down
                return
            threading.Thread(target=self._serve_and_close, args=(client,), daemon=True).start()

    def _serve_and_close(self, client: socket.socket) -> None:
        with client, self._holding(client):
            self._serve(client)

    @contextlib.contextmanager
    def _holding(self, connection: socket.socket) -> Iterator[None]:
        with self._lock:
            self._open.add(connection)
        try:
            if self.cut_off:
                _shut(connection)
            yield
        finally:
            with self._lock:
                self._open.discard(connection)

    def _cut(self) -> None:
        self.cut_off = True
        with self._lock:
            held = list(self._open)
        for connection in held:
            _shut(connection)

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(self._idle)
        head = _head(client)
        if head is None:
            return
        method, _, rest = head.partition(b" ")
        request_target = rest.partition(b" ")[0].decode("latin-1")
        authority = request_target if method == b"CONNECT" else urlsplit(request_target).netloc
        if not self._is_target(authority):
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        address = (str(self._target.address), self._target.port)
        try:
            upstream = socket.create_connection(address, timeout=self._timeout)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with upstream, self._holding(upstream):
            upstream.settimeout(self._idle)
            if method == b"CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                upstream.sendall(head.partition(b"\r\n\r\n")[2])
            else:
                # The absolute URL as it came: a server must take it (RFC 9112 3.2.2).
                upstream.sendall(head)
            _pipe(client, upstream, self._answer_bytes)

    def _is_target(self, authority: str) -> bool:
        parts = urlsplit(f"//{authority}")
        try:
            port = parts.port
        except ValueError:
            return False
        host = (parts.hostname or "").lower()
        return host == self._target.host.lower() and port in (self._target.port, None)


def _head(client: socket.socket) -> bytes | None:
    """What the client sent up to the end of its request's head (and perhaps a little of
    what follows); None when it sent no whole head within bounds."""
    received = b""
    while b"\r\n\r\n" not in received:
        try:
            chunk = client.recv(CHUNK)
        except OSError:
            return None
        if not chunk or len(received) + len(chunk) > MAX_HEAD:
            return None
        received += chunk
    return received


def _pipe(client: socket.socket, upstream: socket.socket, answer_bytes: int | None) -> None:
    """Copy both ways until either side is done, silent for the timeout, or the receiver
    has sent ``answer_bytes``."""
    back = threading.Thread(target=_copy, args=(upstream, client, answer_bytes), daemon=True)
    back.start()
    _copy(client, upstream)
    back.join()


def _copy(source: socket.socket, sink: socket.socket, most: int | None = None) -> None:
    left = most
    try:
        while chunk := source.recv(CHUNK if left is None else min(CHUNK, left)):
            sink.sendall(chunk)
            if left is not None:
                left -= len(chunk)
                if left == 0:
                    break
    except OSError:
        pass
    finally:
        for side in (sink, source):
            _shut(side)


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the other copy may have shut it already
        connection.shutdown(socket.SHUT_RDWR)
