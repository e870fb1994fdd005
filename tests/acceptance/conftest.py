"""Run the real ``kbaudit`` command in a subprocess against a data folder of the test's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

KBAUDIT = [sys.executable, "-m", "kbaudit.cli"]


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "KBAUDIT_DATA_DIR": str(data_dir), "KBAUDIT_LOG_LEVEL": "warning"}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*KBAUDIT, *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kbaudit {args} failed:\n{result.stderr}")
        return result

    def key(self, org: str, scopes: str) -> str:
        return self.run("keys", "create", "--org", org, "--scopes", scopes).stdout.splitlines()[-1]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "data")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(cli: Cli) -> Iterator[str]:
    """A real ``kbaudit serve`` on a free loopback port; its base URL."""
    cli.run("migrate")
    port = free_port()
    process = subprocess.Popen(
        [*KBAUDIT, "serve", "--port", str(port)],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx2.TransportError:
            time.sleep(0.1)
    else:
        process.kill()
        raise AssertionError(f"kbaudit serve did not come up: {process.communicate()[1]}")
    yield base
    process.terminate()
    _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
