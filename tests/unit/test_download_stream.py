"""The download route's read-ahead: the next chunk decrypts while the current one is sent."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

from kbaudit.api.exports import one_ahead

CHUNKS = 4


def test_next_chunk_is_decrypting_before_the_current_one_is_sent() -> None:
    asked = [threading.Event() for _ in range(CHUNKS)]

    def decrypting() -> Iterator[bytes]:
        for number in range(CHUNKS):
            asked[number].set()
            yield bytes([number])

    async def send_all() -> list[bytes]:
        sent = []
        async for chunk in one_ahead(decrypting()):
            # No await between receiving a chunk and this check, as in a send that does not
            # wait: only work already in a thread can have asked for the next chunk.
            following = len(sent) + 1
            if following < CHUNKS:
                assert asked[following].wait(timeout=5), f"chunk {following} was not asked for"
            sent.append(bytes(chunk))
        return sent

    assert asyncio.run(send_all()) == [bytes([number]) for number in range(CHUNKS)]


def test_closing_early_closes_the_decrypting_stream() -> None:
    closed = threading.Event()

    def decrypting() -> Iterator[bytes]:
        try:
            while True:
                yield b"x"
        finally:
            closed.set()

    async def send_one() -> None:
        stream = one_ahead(decrypting())
        async for _ in stream:
            break
        await stream.aclose()

    asyncio.run(send_one())
    assert closed.is_set()
