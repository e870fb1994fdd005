"""The blob store's promises, on whichever store the mode uses (a folder, or S3)."""

from __future__ import annotations

import os
import uuid

import pytest

from kbaudit.blobs import s3
from kbaudit.blobs.s3 import S3BlobStore
from kbaudit.container import Container
from kbaudit.errors import BlobNotFound


def test_a_blob_reads_back_whole_across_many_ranges(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "READ_RANGE", 300_001)  # S3 reads go range by range
    blobs = container.exports.blobs
    content = os.urandom(1_000_000)
    with blobs.writer("exports/org/job/file.bin") as sink:
        for offset in range(0, len(content), 65_536):
            sink.write(content[offset : offset + 65_536])
    assert blobs.size("exports/org/job/file.bin") == len(content)
    chunks = list(blobs.read("exports/org/job/file.bin", chunk_size=100_000))
    assert b"".join(chunks) == content
    assert max(map(len, chunks)) <= 100_000


def test_a_write_that_fails_leaves_no_blob(container: Container) -> None:
    blobs = container.exports.blobs

    def fail_midway() -> None:
        with blobs.writer("exports/org/job/broken.bin") as sink:
            sink.write(os.urandom(9 * 1024 * 1024))  # past one upload chunk: multipart
            raise RuntimeError("the part failed")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert blobs.keys("exports/org") == []
    with pytest.raises(BlobNotFound):
        list(blobs.read("exports/org/job/broken.bin"))


def test_keys_and_delete_stay_inside_their_prefix(container: Container) -> None:
    blobs = container.exports.blobs
    for key in ("exports/a/1/x", "exports/a/2/y", "exports/ab/1/z"):
        with blobs.writer(key) as sink:
            sink.write(b"data")
    assert blobs.keys("exports/a") == ["exports/a/1/x", "exports/a/2/y"]
    assert blobs.delete_prefix("exports/a") == 2
    assert blobs.keys("exports/a") == []
    assert blobs.keys("exports/ab") == ["exports/ab/1/z"]


@pytest.mark.parametrize("key", ["../x", "exports/../../x", "exports//x", "/exports/x", ""])
def test_keys_that_could_leave_the_store_are_refused(container: Container, key: str) -> None:
    with pytest.raises(BlobNotFound):
        list(container.exports.blobs.read(key))


@pytest.mark.scaleout
def test_a_missing_bucket_is_created_at_start_or_named_by_readiness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = os.environ["KBAUDIT_TEST_S3_ENDPOINT"]
    name = f"kbaudit-new-{uuid.uuid4().hex[:12]}"
    missing = S3BlobStore(f"s3://{name}/exports", endpoint)
    with pytest.raises(OSError, match=f"bucket '{name}' at .* does not exist"):
        missing.ping()
    assert missing.ensure_bucket() is None  # these credentials may create it
    missing.ping()
    with missing.writer("a/b") as sink:
        sink.write(b"it holds blobs now")
    assert missing.keys("a") == ["a/b"]

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    refused = S3BlobStore(f"s3://{name}/exports", endpoint)
    with pytest.raises(OSError, match="refuses kbaudit's credentials"):
        refused.ping()
