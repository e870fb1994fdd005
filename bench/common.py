"""What the benchmarks share: a cached data set, fresh data folders and a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import orjson

from kbaudit.demo import demo_records

OUT = Path(__file__).parent / "out"
END = datetime(2026, 11, 1, tzinfo=UTC)


def dataset(count: int) -> Path:
    """An NDJSON file of ``count`` demo records, made once and reused."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"records-{count}.ndjson"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("wb") as handle:
            for record in demo_records(count, end=END):
                handle.write(orjson.dumps(without_nulls(msgspec.to_builtins(record))) + b"\n")
        partial.rename(path)
    return path


def peak_rss_mb(pid: int | str = "self") -> int | None:
    """The kernel's high-water mark of a process's resident memory (VmHWM); None once it has
    gone. Not ``ru_maxrss``: on Linux a child's starts at its parent's RSS when it forked, so
    an export child of a bench holding 800 MB reported 800 MB, whatever it used itself (the
    "882 MB unexplained" of a Parquet export was that)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return None


def without_nulls(value: Any) -> Any:
    """Writers leave out what they do not know; so does the data set."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def fresh_env(name: str) -> dict[str, str]:
    data_dir = OUT / name
    subprocess.run(["rm", "-rf", str(data_dir)], check=True)
    return {**os.environ, "KBAUDIT_DATA_DIR": str(data_dir), "KBAUDIT_LOG_LEVEL": "warning"}


def kbaudit(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "kbaudit.cli", *args], env=env, capture_output=True, text=True
    )
    if result.returncode not in (0, 1):
        raise RuntimeError(result.stderr)
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """``kbaudit serve`` in a subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], processes: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "kbaudit.cli", "serve"),
                *("--port", str(self.port), "--processes", str(processes)),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                httpx2.get(f"{self.url}/healthz", timeout=1)
                return
            except httpx2.TransportError:
                time.sleep(0.1)
        raise RuntimeError("kbaudit serve did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
