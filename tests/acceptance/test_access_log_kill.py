"""An answered request's access-log entry survives the server being killed with SIGKILL."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx2

from tests.acceptance.conftest import Cli, Serve
from tests.conftest import WINDOW
from tests.helpers import RECORDS


def logged_queries(cli: Cli) -> int:
    rows = cli.query("SELECT count(*) FROM access_log WHERE action = 'query'")
    return int(rows[0][0]) if rows else 0


def test_an_answered_querys_entry_survives_sigkill(cli: Cli, serve: Callable[[], Serve]) -> None:
    key = cli.key("acme", "kb_audit:read")
    killed = serve()
    response = httpx2.get(f"{killed.url}{RECORDS}", params=WINDOW, headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    killed.kill()
    serve()  # on SQLite, the next process moves what the killed one had spooled
    deadline = time.monotonic() + 30
    while logged_queries(cli) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a second copy, were there one, would be in by now
    assert logged_queries(cli) == 1
