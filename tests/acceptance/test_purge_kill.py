"""A purge killed with SIGKILL loses nothing: every record is still present or archived."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import msgspec
from sqlalchemy import text

from kbaudit.demo import demo_records
from kbaudit.store.engine import create_store_engine
from tests.acceptance.conftest import KBAUDIT, Cli, Serve


def present_ids(cli: Cli, org: str) -> set[str]:
    rows = cli.query(
        "SELECT r.id FROM records r JOIN organizations o ON o.id = r.org_id WHERE o.name = :org",
        org=org,
    )
    return {row[0] for row in rows}


def kill_after_archives(cli: Cli, purging: subprocess.Popen[bytes], archives: int) -> None:
    """SIGKILL the purge once it has written ``archives`` archives. One connection looks:
    opening one per look was slow enough, on a loaded machine, for the whole purge to end
    between two looks."""
    engine = create_store_engine(cli.database_url)
    try:
        with engine.connect() as connection:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                count = connection.execute(text("SELECT count(*) FROM archives")).scalar_one()
                connection.rollback()  # the next look sees the purge's latest commit
                if count >= archives:
                    break
                time.sleep(0.005)
    finally:
        engine.dispose()
    purging.kill()
    purging.wait()


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
    kill_after_archives(cli, purging, 3)
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
