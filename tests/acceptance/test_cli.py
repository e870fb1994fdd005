"""The command line as an operator uses it."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import msgspec
import pytest

from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.domain import RecordIn
from kbaudit.services.ingest import ingest_records
from kbaudit.services.keys import organization_named
from tests.acceptance.conftest import Cli, Serve, recent_record
from tests.backends import SCALEOUT
from tests.helpers import RECORDS, record

WIDE = {"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z", "limit": 200}


def test_keys_create_prints_the_key_alone_on_the_last_line(cli: Cli, server: str) -> None:
    result = cli.run("keys", "create", "--org", "acme", "--scopes", "kb_audit:read")
    key = result.stdout.splitlines()[-1]
    assert key.startswith("kba_")
    assert key not in result.stderr
    ok = httpx2.get(f"{server}{RECORDS}", params=WIDE, headers={"x-api-key": key})
    assert ok.status_code == 200
    denied = httpx2.post(
        f"{server}{RECORDS}", json={"items": [recent_record()]}, headers={"x-api-key": key}
    )
    assert denied.status_code == 403


def test_keys_create_refuses_an_unknown_scope(cli: Cli) -> None:
    result = cli.run(
        "keys", "create", "--org", "acme", "--scopes", "kb_audit:everything", check=False
    )
    assert result.returncode == 2
    assert "kb_audit:read" in result.stderr


def test_import_loads_good_lines_and_reports_bad_ones(
    cli: Cli, server: str, tmp_path: Path
) -> None:
    key = cli.key("acme", "kb_audit:read,kb_audit:write")
    finalized = recent_record()
    lines = [json.dumps(recent_record()) for _ in range(3)]
    lines.insert(1, "{not json")
    lines.append(json.dumps(recent_record(duration_ms=-5)))
    lines.append(json.dumps(finalized))
    lines.append(json.dumps({**finalized, "duration_ms": 7}))  # a finalized record may not change
    lines.append("")
    lines.append(json.dumps(recent_record()))
    lines.append(json.dumps(recent_record(request_id="a\u0000b")))  # PostgreSQL holds no NUL
    source = tmp_path / "records.ndjson"
    source.write_text("\n".join(lines) + "\n")
    result = cli.run("import", str(source), "--org", "acme", check=False)
    assert result.returncode == 1
    assert "line 2:" in result.stderr
    assert "line 5:" in result.stderr
    assert "line 7: conflict" in result.stderr
    assert "line 10: strings may not contain NUL characters" in result.stderr
    stored = httpx2.get(f"{server}{RECORDS}", params=WIDE, headers={"x-api-key": key}).json()
    assert len(stored["items"]) == 5


def test_import_into_a_missing_org_says_how_to_make_one(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "records.ndjson"
    source.write_text(json.dumps(recent_record()) + "\n")
    result = cli.run("import", str(source), "--org", "nobody", check=False)
    assert result.returncode == 2
    assert "keys create" in result.stderr


def test_demo_fills_the_store_and_prints_a_working_key(cli: Cli, server: str) -> None:
    cli.run("demo", "--records", "300")
    again = cli.run("demo", "--records", "300")  # keeps what it loaded, prints a new key
    assert "keeping them" in again.stderr
    key = again.stdout.splitlines()[-1]
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(days=32)).isoformat(),
        "end": (now + timedelta(days=1)).isoformat(),
        "limit": 200,
    }
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        page = httpx2.get(
            f"{server}{RECORDS}", params={**window, "cursor": cursor}, headers={"x-api-key": key}
        ).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 300
    statuses = {row["retrieval_status"] for row in seen}
    assert statuses == {"hit", "miss", "blocked", "error"}
    assert {row["audit_write_status"] for row in seen} == {"finalized", "intent_recorded"}
    detail = httpx2.get(f"{server}{RECORDS}/{seen[0]['ref']}", headers={"x-api-key": key}).json()
    assert detail["scopes"]
    uuid.UUID(detail["log"]["id"])


def test_demo_starts_over_a_record_dated_at_the_end_of_time(cli: Cli) -> None:
    """Before instants were bounded, a write could date a record 9999-12-31; such a record
    must not stop the demo (and ./dev.sh run) from starting. (PostgreSQL never could hold
    one: its monthly partition would end in year 10000. 2999 is out of range there too.)"""
    cli.run("keys", "create", "--org", "demo", "--scopes", "kb_audit:read")
    year = 2999 if SCALEOUT else 9999
    end_of_time = datetime(year, 12, 31, 23, 59, 59, tzinfo=UTC)
    # A clock near the end of time too: kbaudit now refuses a record from the future.
    settings = Settings(data_dir=cli.data_dir, **backend_settings(cli))
    container = build_container(settings, clock=lambda: end_of_time - timedelta(days=1))
    try:
        late = msgspec.convert(record(created_at=end_of_time.isoformat()), RecordIn)
        org = organization_named(container.store, "demo")
        ingest_records(container.store, container.clock, org.id, [late])
    finally:
        container.close()
    result = cli.run("demo", "--records", "10")
    assert "keeping them" in result.stderr
    assert result.stdout.splitlines()[-1].startswith("kba_")


def test_health_readiness_and_metrics(server: str) -> None:
    assert httpx2.get(f"{server}/healthz").json() == {"status": "ok"}
    ready = httpx2.get(f"{server}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "blob_store": "ok", "queue": "ok"}
    httpx2.get(f"{server}{RECORDS}", params=WIDE)
    metrics = httpx2.get(f"{server}/metrics").text
    assert (
        'kbaudit_http_requests_total{method="GET",route="/v1/knowledge-base/audit/retrievals",status="401"}'
        in metrics
    )


def backend_settings(cli: Cli) -> dict[str, str]:
    """The KBAUDIT_* settings of ``cli``'s commands beyond the data folder, for an in-process
    container on the same stores."""
    names = ("database_url", "blob_url", "s3_endpoint", "master_key", "queue_url")
    return {n: cli.env[f"KBAUDIT_{n.upper()}"] for n in names if f"KBAUDIT_{n.upper()}" in cli.env}


def test_the_demo_prints_a_curl_line_and_an_export_line_that_work_as_printed(
    cli: Cli, serve: Callable[..., Serve]
) -> None:
    server = serve()
    printed = cli.run("demo", "--records", "200", "--port", str(server.port)).stderr
    curl = next(line for line in printed.splitlines() if line.strip().startswith("curl "))
    answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, check=True)
    assert len(json.loads(answer.stdout)["items"]) == 5
    create = next(line for line in printed.splitlines() if "kbaudit export create" in line)
    words = shlex.split(create)
    env = dict(word.split("=", 1) for word in words[:2])
    cli.env.update(env)
    export_id = cli.run(*words[3:]).stdout.splitlines()[-1]
    assert "succeeded, 200 rows" in cli.run("export", "wait", export_id).stderr


def test_help_speaks_to_users(cli: Cli) -> None:
    text = " ".join(cli.run("--help").stdout.split())
    assert "To try it: `kbaudit demo`" in text
    assert "--debug" in text
    assert "tests" not in text


WRONG_SETTINGS = {
    "a database URL that is none": (
        {"KBAUDIT_DATABASE_URL": "nonsense"},
        "KBAUDIT_DATABASE_URL: 'nonsense' is not a database URL",
    ),
    "a database of another kind": (
        {"KBAUDIT_DATABASE_URL": "mysql://u:secret@127.0.0.1/x"},
        "KBAUDIT_DATABASE_URL: 'mysql' databases are not supported",
    ),
    "a database nobody answers for": (
        {
            "KBAUDIT_DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:9/x",
            "KBAUDIT_MASTER_KEY": "A" * 44,
        },
        "the database at postgresql://u:***@127.0.0.1:9/x cannot be reached",
    ),
    "a master key version given twice": (
        {"KBAUDIT_MASTER_KEY": f"1:{'A' * 44},1:{'B' * 44}"},
        "KBAUDIT_MASTER_KEY: master key version 1 is given twice",
    ),
    "a master key that is not base64": (
        {"KBAUDIT_MASTER_KEY": "not base64!"},
        "KBAUDIT_MASTER_KEY must hold base64 of 32+ bytes",
    ),
    "a number that is not one": (
        {"KBAUDIT_EXPORT_ROWS_PER_FILE": "many"},
        "KBAUDIT_EXPORT_ROWS_PER_FILE: Input should be a valid integer",
    ),
}


@pytest.mark.parametrize(("env", "message"), WRONG_SETTINGS.values(), ids=WRONG_SETTINGS.keys())
def test_a_wrong_setting_is_one_plain_line(cli: Cli, env: dict[str, str], message: str) -> None:
    for name in ("KBAUDIT_DATABASE_URL", "KBAUDIT_MASTER_KEY", "KBAUDIT_BLOB_URL"):
        cli.env.pop(name, None)
    cli.env.update(env)
    result = cli.run("migrate", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
    debug = cli.run("migrate", "--debug", check=False)
    assert "Traceback" in debug.stderr


def test_a_keyring_file_or_key_that_does_not_fit_the_data_is_refused(cli: Cli) -> None:
    cli.run("migrate")
    if SCALEOUT:
        cli.env["KBAUDIT_MASTER_KEY"] = "A" * 44
        where = "KBAUDIT_MASTER_KEY"
    else:
        keys = cli.data_dir / "master.keys"
        keys.write_text("garbage\n")
        refused = cli.run("migrate", check=False)
        assert refused.returncode == 2
        assert f"{keys} must hold base64" in refused.stderr
        keys.write_text(f"1:{'A' * 44}\n")
        where = "master.keys"
    mismatch = cli.run("migrate", check=False)
    assert mismatch.returncode == 2
    assert "master key version 1 is not the one this database was written with" in mismatch.stderr
    assert where in mismatch.stderr


def test_slow_headers_and_bodies_time_out(cli: Cli, serve: Callable[..., Serve]) -> None:
    cli.env |= {"KBAUDIT_HEADER_TIMEOUT_SECONDS": "1", "KBAUDIT_BODY_TIMEOUT_SECONDS": "1"}
    key = cli.key("acme", "kb_audit:write")
    server = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        started = time.monotonic()
        answer = _read_all(slow)
        assert answer.startswith(b"HTTP/1.1 408")
        assert 0.9 < time.monotonic() - started < 5
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stingy:
        stingy.sendall(
            b"POST " + RECORDS.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"x-api-key: " + key.encode() + b"\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n" + b'{"items":'
        )
        answer = _read_all(stingy)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"request_timeout" in answer
    assert httpx2.get(f"{server.url}/healthz").status_code == 200


def _read_all(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
