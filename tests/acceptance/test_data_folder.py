"""The embedded default's data folder taken away under a running server: writes and reads
answer 503 (retryable) rather than being acknowledged into files no path leads to, /readyz
says why, and kbaudit never makes a new master key beside data written under another.
Always the embedded default, in either pass of the suite: the folder is what is tested."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import httpx2
import pytest

from tests.acceptance.conftest import RECENT_WINDOW, Cli, Serve, recent_record
from tests.helpers import RECORDS

SHARED = ("KBAUDIT_DATABASE_URL", "KBAUDIT_BLOB_URL", "KBAUDIT_QUEUE_URL", "KBAUDIT_MASTER_KEY")


@pytest.fixture
def embedded(cli: Cli) -> Cli:
    for name in (*SHARED, "KBAUDIT_S3_ENDPOINT"):
        cli.env.pop(name, None)
    return cli


def test_a_data_folder_deleted_under_the_server_acknowledges_nothing_more(
    embedded: Cli, serve: Callable[..., Serve]
) -> None:
    key = {"x-api-key": embedded.key("acme", "kb_audit:write,kb_audit:read")}
    server = serve()
    written = httpx2.post(f"{server.url}{RECORDS}", json={"items": [recent_record()]}, headers=key)
    assert written.status_code == 200
    shutil.rmtree(embedded.data_dir)
    for _ in range(3):
        refused = httpx2.post(
            f"{server.url}{RECORDS}", json={"items": [recent_record()]}, headers=key
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["retryable"] is True
        assert refused.headers["retry-after"] == "1"
    query = httpx2.get(f"{server.url}{RECORDS}", params=RECENT_WINDOW, headers=key)
    assert query.status_code == 503, query.text  # its access-log entry cannot be kept
    ready = httpx2.get(f"{server.url}/readyz")
    assert ready.status_code == 503
    assert "kbaudit.db is gone or was replaced" in ready.json()["checks"]["database"]
    assert httpx2.get(f"{server.url}/healthz").status_code == 200


def test_a_database_without_its_master_key_is_refused_not_rekeyed(embedded: Cli) -> None:
    embedded.key("acme", "kb_audit:read")
    (embedded.data_dir / "master.keys").unlink()
    refused = embedded.run(
        "keys", "create", "--org", "acme", "--scopes", "kb_audit:read", check=False
    )
    assert refused.returncode == 2, refused.stderr
    assert "will not make a new master key" in refused.stderr
    assert not (embedded.data_dir / "master.keys").exists()
