"""The embedded default's data folder taken away under a running server, or made read-only:
writes and reads answer 503 (retryable) rather than being acknowledged into files no path
leads to, /readyz says why, and kbaudit never makes a new master key beside data written
under another.
Always the embedded default, in either pass of the suite: the folder is what is tested."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

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


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only while the block runs: a read-only bind mount over it. Root (CI's
    user) writes whatever the permissions say, and a file system with files open for writing
    cannot be remounted read-only; files kbaudit holds open stay writable underneath, as a
    folder that turns read-only under a running server would not let them: kbaudit must see
    it by the path, before it writes."""
    done = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"a read-only data folder needs a mount (as root): {done.stderr!r}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_data_folder_is_a_503_that_says_so(
    embedded: Cli, serve: Callable[..., Serve]
) -> None:
    key = {"x-api-key": embedded.key("acme", "kb_audit:write,kb_audit:read")}
    server = serve()
    first = recent_record()
    written = httpx2.post(f"{server.url}{RECORDS}", json={"items": [first]}, headers=key)
    assert written.status_code == 200, written.text
    with read_only(embedded.data_dir):
        refused = httpx2.post(
            f"{server.url}{RECORDS}", json={"items": [recent_record()]}, headers=key
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["retryable"] is True
        assert "is read-only" in refused.json()["message"]
        ready = httpx2.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert "is read-only" in ready.json()["checks"]["database"]
    later = recent_record()
    again = httpx2.post(f"{server.url}{RECORDS}", json={"items": [later]}, headers=key)
    assert again.status_code == 200, again.text
    query = httpx2.get(f"{server.url}{RECORDS}", params=RECENT_WINDOW, headers=key)
    assert {item["id"] for item in query.json()["items"]} == {first["id"], later["id"]}


def test_a_database_without_its_master_key_is_refused_not_rekeyed(embedded: Cli) -> None:
    embedded.key("acme", "kb_audit:read")
    (embedded.data_dir / "master.keys").unlink()
    refused = embedded.run(
        "keys", "create", "--org", "acme", "--scopes", "kb_audit:read", check=False
    )
    assert refused.returncode == 2, refused.stderr
    assert "will not make a new master key" in refused.stderr
    assert not (embedded.data_dir / "master.keys").exists()
