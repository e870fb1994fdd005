"""The SDK's reader against httpx2's MockTransport: what it does with what a server sends."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx2
import pytest

from kbaudit_sdk import AuditReader, IntegrityError

EXPORT = "/v1/knowledge-base/audit/exports/e1"
DATA = b"id,ref\r\n1,a\r\n"


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def server(manifest_sha: str) -> httpx2.MockTransport:
    """A finished export of one data file, whose manifest lists ``manifest_sha`` for it."""
    manifest = json.dumps({"files": [{"name": "a.csv", "sha256_plaintext": manifest_sha}]})
    files = {"a.csv": DATA, "manifest.json": manifest.encode()}
    view = {
        "status": "succeeded",
        "files": [
            {"name": name, "sha256_plaintext": sha(content), "download_token": "t"}
            for name, content in files.items()
        ],
    }

    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == EXPORT:
            return httpx2.Response(200, json=view)
        return httpx2.Response(200, content=files[request.url.path.rsplit("/", 1)[1]])

    return httpx2.MockTransport(answer)


def reader(transport: httpx2.MockTransport) -> AuditReader:
    client = httpx2.Client(base_url="http://kbaudit", transport=transport)
    return AuditReader("", "key", http=client)


def test_files_that_match_the_manifest_are_kept(tmp_path: Path) -> None:
    saved = reader(server(sha(DATA))).download("e1", tmp_path)
    assert [path.name for path in saved] == ["a.csv", "manifest.json"]
    assert (tmp_path / "a.csv").read_bytes() == DATA


def test_a_file_the_manifest_disagrees_with_is_not_kept(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match=r"a\.csv does not match the manifest"):
        reader(server("0" * 64)).download("e1", tmp_path)
    assert not (tmp_path / "a.csv").exists()
