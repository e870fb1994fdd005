"""Run the real ``kbaudit`` command in a subprocess against a data folder of the test's."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kbaudit.store.engine import create_store_engine
from tests.backends import SCALEOUT, scaleout_env
from tests.helpers import record

KBAUDIT = [sys.executable, "-m", "kbaudit.cli"]
# Servers here run on the real clock, and kbaudit refuses a record older than its
# organization's retention (365 days unless set): records are dated from today.
RECENT_END = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
RECENT_WINDOW = {
    "start": (RECENT_END - timedelta(days=60)).isoformat(),
    "end": (RECENT_END + timedelta(days=1)).isoformat(),
}


def recent_record(**fields: Any) -> dict[str, Any]:
    """``tests.helpers.record``, made an hour before today began."""
    made = (RECENT_END - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    return record(**{"created_at": made, **fields})


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "KBAUDIT_DATA_DIR": str(data_dir), "KBAUDIT_LOG_LEVEL": "warning"}
        if SCALEOUT:
            # The queue stays in the data folder: these tests drive one `serve` with its own
            # workers. The Redis-dispatched workers have tests of their own.
            self.env |= scaleout_env()

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*KBAUDIT, *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kbaudit {args} failed:\n{result.stderr}")
        return result

    @property
    def database_url(self) -> str:
        return self.env.get("KBAUDIT_DATABASE_URL") or f"sqlite:///{self.data_dir / 'kbaudit.db'}"

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` from the database the commands use; uuids (and 16-byte ids) as
        text. A table that does not exist yet reads as no rows (the server may still be
        migrating)."""
        engine = create_store_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(text(sql), params).fetchall()
        except DBAPIError:
            return []
        finally:
            engine.dispose()
        return [tuple(map(_uuid_text, row)) for row in rows]

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


class Serve:
    """A real ``kbaudit serve`` on a free loopback port."""

    def __init__(self, cli: Cli, *options: str) -> None:
        self.cli = cli
        self.options = options
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Serve:
        self.process = subprocess.Popen(
            [*KBAUDIT, "serve", "--port", str(self.port), *self.options],
            env=self.cli.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx2.TransportError:
                time.sleep(0.1)
        self.process.kill()
        raise AssertionError(f"kbaudit serve did not come up: {self.process.communicate()[1]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=30)

    def stop(self) -> None:
        """SIGTERM, and insist on an orderly exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        _, errors = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, errors


@pytest.fixture
def serve(cli: Cli) -> Iterator[Callable[..., Serve]]:
    """Start servers on the test's data folder (with ``serve`` options, if any); each is
    stopped at the end."""
    started: list[Serve] = []

    def start(*options: str) -> Serve:
        started.append(Serve(cli, *options).start())
        return started[-1]

    cli.run("migrate")
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(serve: Callable[[], Serve]) -> str:
    return serve().url


def _uuid_text(value: Any) -> Any:
    if isinstance(value, bytes) and len(value) == 16:
        return str(uuid.UUID(bytes=value))
    return str(value) if isinstance(value, uuid.UUID) else value
