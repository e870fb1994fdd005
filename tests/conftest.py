"""Shared fixtures: a fresh container per test on the embedded default, and API clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kbaudit.api.app import create_app
from kbaudit.config import Settings
from kbaudit.container import Container, build_container
from kbaudit.domain import SCOPES
from kbaudit.logs import configure_logging
from kbaudit.services.keys import create_key
from tests.backends import SCALEOUT, databases, scaleout_settings

# The Feather contract, as kept in this repository (test_contract.py holds the copy equal to
# the shared one beside the checkout, where there is one).
CONTRACT = Path(__file__).resolve().parents[1] / "docs/contract/feather-kb-audit-openapi.json"
WINDOW = {"start": "2020-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))


def settings_for_tests(data_dir: Path, **overrides: object) -> Settings:
    """Settings for in-process tests: tasks run inline, retries do not wait. In the scale-out
    mode, each call gets its own PostgreSQL database and its own prefix in the bucket."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "queue_url": "inline",
        "export_retry_backoff_seconds": 0,
        **(scaleout_settings() if SCALEOUT else {}),
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def container(tmp_path: Path, clock: ManualClock) -> Iterator[Container]:
    built = build_container(settings_for_tests(tmp_path / "data"), clock=clock)
    yield built
    built.close()


@dataclass
class Api:
    """A test client plus a way to make keys for it."""

    client: TestClient
    container: Container

    def key(self, org: str = "acme", scopes: tuple[str, ...] = SCOPES) -> dict[str, str]:
        return {"x-api-key": create_key(self.container.store, self.container.clock, org, scopes)}


@pytest.fixture
def api(container: Container) -> Iterator[Api]:
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        yield Api(client, container)


@pytest.fixture
def make_api(tmp_path: Path, clock: ManualClock) -> Iterator[Callable[..., Api]]:
    """Build an API over a container with some settings changed."""
    opened: list[tuple[TestClient, Container]] = []

    def make(**overrides: object) -> Api:
        data_dir = Path(str(overrides.pop("data_dir", tmp_path / f"data{len(opened)}")))
        built = build_container(settings_for_tests(data_dir, **overrides), clock=clock)
        client = TestClient(create_app(built), raise_server_exceptions=False).__enter__()
        opened.append((client, built))
        return Api(client, built)

    yield make
    for client, built in opened:
        client.__exit__(None, None, None)
        built.close()


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    if SCALEOUT:
        databases().drop_all()


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    configure_logging("warning")
