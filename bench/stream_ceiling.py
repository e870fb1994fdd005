"""What an asyncio server in this Python reaches when it streams zstd-decompressed bytes, with
none of kbaudit's code: the ceiling that kbaudit's plain (identity-coded) download works under.

Two passes, each received by ``curl`` on loopback, nine rounds:

- ``memory``: uvicorn (the asyncio loop and httptools, as ``kbaudit serve`` runs) sending bytes
  already in memory: what the loopback and the HTTP stack carry.
- ``decompressed``: the same server decompressing a zstd-3 stream of the data set in a worker
  thread, one chunk ahead of the send, against decompressing the same stream alone in one
  thread (no HTTP) just before: the share that ``bench.export --download-only`` sets kbaudit's
  plain downloads against, without decryption.

    python -m bench.stream_ceiling [--mib 282] [--chunk-mb 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
import zstandard

from bench.common import dataset, free_port

ROUNDS = 9


class Streams:
    def __init__(self, data: bytes, chunk: int) -> None:
        self.size = len(data)
        self.chunk = chunk
        self.in_memory = memoryview(data)
        self.compressed = zstandard.ZstdCompressor(level=3).compress(data)

    def decompressed(self) -> Iterator[bytes]:
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(self.compressed), read_size=1 << 20, read_across_frames=True
        )
        while chunk := reader.read(self.chunk):
            yield chunk

    def raw_rate(self) -> float:
        """MB/s of decompressing alone, in this thread."""
        started = time.perf_counter()
        for _ in self.decompressed():
            pass
        return self.size / (time.perf_counter() - started) / 1e6


def app_of(streams: Streams) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        length = str(streams.size).encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}
        )
        if scope["path"] == "/memory":
            for start in range(0, streams.size, streams.chunk):
                body = streams.in_memory[start : start + streams.chunk]
                await send({"type": "http.response.body", "body": body, "more_body": True})
        else:
            loop = asyncio.get_running_loop()
            chunks = streams.decompressed()
            pending = loop.run_in_executor(None, next, chunks, None)
            while (chunk := await pending) is not None:
                pending = loop.run_in_executor(None, next, chunks, None)
                body = memoryview(chunk)
                await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def curl_rate(url: str) -> float:
    """MB/s as curl timed the transfer."""
    speed = subprocess.run(
        ["curl", "-sf", "-o", "/dev/null", "-w", "%{speed_download}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(speed) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=282, help="how much of the data set to stream")
    parser.add_argument("--chunk-mb", type=int, default=8)
    args = parser.parse_args()
    with dataset(1_000_000).open("rb") as source:
        streams = Streams(source.read(args.mib << 20), args.chunk_mb << 20)
    port = free_port()
    config = uvicorn.Config(
        app_of(streams),
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        http="httptools",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    memory = [curl_rate(f"{base}/memory") for _ in range(ROUNDS)]
    shares, raws, https = [], [], []
    for _ in range(ROUNDS):
        raws.append(streams.raw_rate())
        https.append(curl_rate(f"{base}/decompressed"))
        shares.append(https[-1] / raws[-1])
    server.should_exit = True
    thread.join()
    size, chunk = streams.size / 1e6, args.chunk_mb
    print(f"streaming {size:,.0f} MB in {chunk} MB chunks, medians of {ROUNDS} rounds")
    print(f"  from memory over HTTP           {statistics.median(memory):7,.0f} MB/s")
    print(f"  decompressing alone, one thread {statistics.median(raws):7,.0f} MB/s")
    print(
        f"  decompressing, over HTTP        {statistics.median(https):7,.0f} MB/s; against alone"
        f" in the same round {statistics.median(shares):.0%}"
        f" (lowest {min(shares):.0%}, highest {max(shares):.0%})"
    )


if __name__ == "__main__":
    main()
