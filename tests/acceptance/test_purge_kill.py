"""A purge killed with SIGKILL loses nothing: every record is still present or archived."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import msgspec

from kbaudit.demo import demo_records
from tests.acceptance.conftest import KBAUDIT, Cli, Serve


def present_ids(cli: Cli, org: str) -> set[str]:
    rows = cli.query(
        "SELECT r.id FROM records r JOIN organizations o ON o.id = r.org_id WHERE o.name = :org",
        org=org,
    )
    return {row[0] for row in rows}


def archive_count(cli: Cli) -> int:
    return int(sum(count for (count,) in cli.query("SELECT count(*) FROM archives")))


def test_a_purge_killed_midway_never_deletes_without_an_archive(
    cli: Cli, serve: Callable[[], Serve], tmp_path: Path
) -> None:
    key = cli.key("acme", "kb_audit:admin,kb_audit:read")
    cli.key("check", "kb_audit:read")
    aged = datetime.now(UTC) - timedelta(days=200)
    records = list(demo_records(8000, end=aged))
    source = tmp_path / "old.ndjson"
    source.write_bytes(b"\n".join(msgspec.json.encode(record) for record in records))
    cli.run("import", str(source), "--org", "acme")
    seeded = {str(record.id) for record in records}

    server = serve()
    policy = {"retention_days": 90, "archive_before_delete": True}
    response = httpx2.put(
        f"{server.url}/v1/knowledge-base/retention-policy", json=policy, headers={"x-api-key": key}
    )
    assert response.status_code == 200, response.text
    server.stop()

    purging = subprocess.Popen(
        [*KBAUDIT, "retention", "purge", "--batch-size", "250"],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while archive_count(cli) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    purging.kill()
    purging.wait()
    remaining = present_ids(cli, "acme")
    assert seeded - remaining, "the purge had deleted some records before it was killed"
    assert remaining, "the purge was killed before it finished"

    def archived_ids() -> set[str]:
        for line in cli.run("archive", "list", "--org", "acme").stdout.splitlines():
            cli.run("archive", "restore", line.split()[0], "--into", "check")
        return present_ids(cli, "check")

    assert seeded - remaining <= archived_ids()

    cli.run("retention", "purge", "--batch-size", "1000")
    assert present_ids(cli, "acme") == set()
    assert archived_ids() == seeded
