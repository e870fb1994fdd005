"""Files encrypted to the customer's own age keys (https://age-encryption.org/v1), through
pyrage: only the holders of the X25519 identities can read them, kbaudit included."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Sequence
from types import TracebackType

import pyrage
from pyrage import x25519

from kbaudit.crypto.files import ChunkReader

MAX_RECIPIENTS = 10
_END = b""  # the writer never queues an empty chunk otherwise


class InvalidRecipient(ValueError):
    """A recipient that is not an X25519 age public key (``age1...``)."""


def parse_recipients(texts: Sequence[str]) -> list[x25519.Recipient]:
    parsed = []
    for text in texts:
        try:
            parsed.append(x25519.Recipient.from_str(text))
        except pyrage.RecipientError as exc:
            raise InvalidRecipient(f"{text[:80]!r} is not an age X25519 recipient ({exc})") from exc
    return parsed


class _Sink:
    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write

    def write(self, data: bytes) -> int:
        self._write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class AgeEncryptingWriter:
    """Write plaintext in; the age file of it, encrypted to ``recipients``, goes to ``write``.
    pyrage pulls its input, so it runs on a thread of its own fed through a short queue. The
    plaintext's SHA-256 and size are known after the block."""

    def __init__(self, recipients: Sequence[str], write: Callable[[bytes], object]) -> None:
        self._recipients = parse_recipients(recipients)
        self._chunks: queue.Queue[bytes] = queue.Queue(4)
        self._sink = _Sink(write)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kbaudit-age", daemon=True)
        self._digest = hashlib.sha256()
        self.plaintext_bytes = 0

    def __enter__(self) -> AgeEncryptingWriter:
        self._thread.start()
        return self

    def write(self, plaintext: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        if plaintext:  # an empty chunk would read as the end
            self._digest.update(plaintext)
            self.plaintext_bytes += len(plaintext)
            self._chunks.put(plaintext)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._chunks.put(_END)
        self._thread.join()
        if exc is None and self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        chunks = iter(self._chunks.get, _END)  # ends at the writer's end, once
        try:
            pyrage.encrypt_io(ChunkReader(chunks), self._sink, self._recipients)
        except BaseException as exc:  # raised in the writer's thread
            self._failure = exc
            for _ in chunks:  # let the writer go on putting until it stops
                pass
