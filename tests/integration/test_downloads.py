"""Downloads beyond the plain GET: HEAD, resuming with Range, and the leftovers of attempts."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import pytest
import zstandard

from kbaudit.blobs import BlobStore
from kbaudit.domain import SCOPES, Caller, KeyId, OrgId
from kbaudit.services.exports import parts
from kbaudit.services.exports.jobs import list_exports
from kbaudit.services.exports.parts import blob_prefix, tidy
from tests.conftest import Api
from tests.helpers import EXPORTS, download_all, seed_demo, start_export, view_export

ZSTD_MAGIC = bytes.fromhex("28b52ffd")


def unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


@pytest.fixture
def finished(make_api: Callable[..., Api]) -> tuple[Api, dict[str, str], dict[str, Any]]:
    api = make_api(export_rows_per_file=20)
    key = api.key()
    seed_demo(api, key, 50)
    return api, key, view_export(api, key, start_export(api, key)["id"])


def fetch(api: Api, key: dict[str, str], job: dict[str, Any], index: int, **headers: str) -> Any:
    file = job["files"][index]
    return api.client.get(
        f"{EXPORTS}/{job['id']}/download/{file['name']}",
        params={"token": file["download_token"]},
        headers={**key, **headers},
    )


def test_head_answers_the_headers_alone(
    finished: tuple[Api, dict[str, str], dict[str, Any]],
) -> None:
    api, key, job = finished
    whole = fetch(api, key, job, 1)
    file = job["files"][1]
    head = api.client.head(
        f"{EXPORTS}/{job['id']}/download/{file['name']}",
        params={"token": file["download_token"]},
        headers=key,
    )
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-length", "etag", "content-type", "accept-ranges"):
        assert head.headers[name] == whole.headers[name], name
    bad = api.client.head(f"{EXPORTS}/{job['id']}/download/{file['name']}", params={"token": "x"})
    assert bad.status_code == 401


@pytest.mark.parametrize("index", [0, 3])  # a data file, and manifest.json
def test_a_range_resumes_a_download(
    finished: tuple[Api, dict[str, str], dict[str, Any]], index: int
) -> None:
    api, key, job = finished
    whole = fetch(api, key, job, index).content
    size = len(whole)
    cases = {
        f"bytes=10-{size - 1}": whole[10:],
        "bytes=10-": whole[10:],
        "bytes=5-9": whole[5:10],
        "bytes=-7": whole[-7:],
        f"bytes=0-{size + 100}": whole,
    }
    for header, expected in cases.items():
        response = fetch(api, key, job, index, range=header)
        assert response.content == expected, header
        first = size - len(expected)
        if header.startswith("bytes=5"):
            first = 5
        if len(expected) < size:
            assert response.status_code == 206, header
            assert response.headers["content-range"] == (
                f"bytes {first}-{first + len(expected) - 1}/{size}"
            )
        assert int(response.headers["content-length"]) == len(expected)
    for unsatisfiable in (f"bytes={size}-", "bytes=-0"):
        outside = fetch(api, key, job, index, range=unsatisfiable)
        assert outside.status_code == 416, unsatisfiable
        assert outside.json()["error"] == "range_not_satisfiable"
    # Another version of the file than the client has: the whole of it, not a piece.
    stale = fetch(api, key, job, index, range="bytes=10-", **{"if-range": '"0000"'})
    assert (stale.status_code, stale.content) == (200, whole)
    # Several ranges or other units: the whole file, as RFC 9110 allows.
    assert fetch(api, key, job, index, range="bytes=0-1,5-6").content == whole
    assert fetch(api, key, job, index, range="lines=1-2").content == whole
    # Digits int() refuses or would read (a superscript two), and more than any file has.
    for odd in ("bytes=\u00b2-", "bytes=-\u00b9", f"bytes={'9' * 40}-"):
        response = api.client.get(
            f"{EXPORTS}/{job['id']}/download/{job['files'][index]['name']}",
            params={"token": job["files"][index]["download_token"]},
            headers={**key, "range": odd.encode("latin-1")},
        )
        assert (response.status_code, response.content) == (200, whole), odd


def test_a_token_with_digits_of_another_script_is_refused(
    finished: tuple[Api, dict[str, str], dict[str, Any]],
) -> None:
    api, _, job = finished
    file = job["files"][0]
    expiry, version, mac = file["download_token"].split(".")
    for token in (f"\u00b2.{version}.{mac}", f"{expiry}.\u0663.{mac}", f"{'9' * 5000}.1.{mac}"):
        response = api.client.get(
            f"{EXPORTS}/{job['id']}/download/{file['name']}", params={"token": token}
        )
        assert response.status_code == 401, token
        assert response.json()["error"] in ("invalid_download_token", "authentication_required")


@pytest.mark.parametrize("accept", ["zstd", "gzip, ZSTD;q=0.5", "br;q=1.0, zstd ; q=1"])
def test_a_client_that_accepts_zstd_gets_the_file_as_stored_compressed(
    finished: tuple[Api, dict[str, str], dict[str, Any]], accept: str
) -> None:
    api, key, job = finished
    file = job["files"][1]
    plain = fetch(api, key, job, 1)
    coded = fetch(api, key, job, 1, **{"accept-encoding": accept})
    assert coded.headers["content-encoding"] == "zstd"
    assert coded.headers["vary"] == plain.headers["vary"] == "Accept-Encoding"
    assert "content-length" not in coded.headers
    assert coded.headers["etag"] == f'"{file["sha256_plaintext"]}+zstd"'
    wire = coded.content  # the test client decodes no zstd
    assert wire.startswith(ZSTD_MAGIC)
    assert len(wire) < len(plain.content)
    assert unzstd(wire) == plain.content
    assert hashlib.sha256(unzstd(wire)).hexdigest() == file["sha256_plaintext"]
    url = f"{EXPORTS}/{job['id']}/download/{file['name']}"
    headers = {**key, "accept-encoding": accept}
    head = api.client.head(url, params={"token": file["download_token"]}, headers=headers)
    for name in ("content-encoding", "etag", "vary"):
        assert head.headers[name] == coded.headers[name], name
    assert "content-length" not in head.headers
    api.container.store.flush_access()
    with api.container.store.reading() as uow:
        entries = uow.access_log.entries(OrgId(1))
    logged = [e.details for e in entries if e.action == "export_downloaded"]
    assert {"file": file["name"], "encoding": "zstd", "bytes": len(wire)}.items() <= logged[
        -1
    ].items()
    assert "encoding" not in logged[0]


@pytest.mark.parametrize("accept", ["", "gzip, deflate", "zstd;q=0", "ZSTD; q=0.000", "*", "zstdx"])
def test_a_client_that_does_not_accept_zstd_gets_the_file_itself(
    finished: tuple[Api, dict[str, str], dict[str, Any]], accept: str
) -> None:
    api, key, job = finished
    response = fetch(api, key, job, 1, **{"accept-encoding": accept})
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)
    assert hashlib.sha256(response.content).hexdigest() == job["files"][1]["sha256_plaintext"]


def test_ranges_and_the_manifest_are_never_coded(
    finished: tuple[Api, dict[str, str], dict[str, Any]],
) -> None:
    api, key, job = finished
    zstd = {"accept-encoding": "zstd"}
    whole = fetch(api, key, job, 1).content
    piece = fetch(api, key, job, 1, range="bytes=10-", **zstd)
    assert (piece.status_code, piece.content) == (206, whole[10:])
    assert "content-encoding" not in piece.headers
    # Resuming a coded download names the coded version: that is not the file's bytes, so
    # the whole file comes again, coded.
    coded = fetch(api, key, job, 1, **zstd)
    again = fetch(
        api, key, job, 1, range="bytes=10-", **{"if-range": coded.headers["etag"]}, **zstd
    )
    assert (again.status_code, again.headers["content-encoding"]) == (200, "zstd")
    assert unzstd(again.content) == whole
    manifest = fetch(api, key, job, 3, **zstd)
    assert manifest.json()["files"]
    assert "content-encoding" not in manifest.headers


def test_what_attempts_left_behind_goes_when_the_job_ends(
    finished: tuple[Api, dict[str, str], dict[str, Any]],
) -> None:
    api, key, job = finished
    deps = api.container.exports
    with api.container.store.reading() as uow:
        org_uuid = uow.keys.organization(uow.exports.job(job["id"]).org_id).uuid  # type: ignore[union-attr]
    prefix = blob_prefix(org_uuid, job["id"])
    kept = deps.blobs.keys(prefix)
    with deps.blobs.writer(f"{prefix}/kb-audit-00001.csv.0badf00d") as sink:
        sink.write(b"an attempt that lost its lease")
    if hasattr(deps.blobs, "root"):  # a local folder: an upload a SIGKILL cut off
        (deps.blobs.root / prefix / ".kb-audit-00002.csv.0123.partial").write_bytes(b"half")
    tidy(deps, job["id"])
    assert deps.blobs.keys(prefix) == kept
    if hasattr(deps.blobs, "root"):
        assert not list((deps.blobs.root / prefix).glob(".*partial"))
    files = download_all(api, key, job["id"])
    assert len(files) == 3


class LookingWhenStored:
    """A blob store that calls ``look`` once a file is stored: after its part has written
    every row and before the part is recorded done."""

    def __init__(self, blobs: BlobStore, look: Callable[[], None]) -> None:
        self._blobs, self._look = blobs, look

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        with self._blobs.writer(key) as sink:
            yield sink
        self._look()


def test_a_running_part_reports_the_rows_it_has_written(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_api()
    key = api.key()
    seed_demo(api, key, 30)
    monkeypatch.setattr(parts, "PROGRESS_SECONDS", 0.0)  # a heartbeat after every batch
    seen: list[tuple[int, int]] = []
    deps = api.container.exports

    def look() -> None:
        caller = Caller(OrgId(1), KeyId("k"), frozenset(SCOPES), None)
        [job] = list_exports(deps, api.container.cursor_codec, caller, None, 1, None).items
        seen.append((job.parts_done, job.rows_written))

    deps.blobs = LookingWhenStored(deps.blobs, look)
    job = view_export(api, key, start_export(api, key)["id"])
    assert seen == [(0, 30)]  # while the only part ran: none done, 30 rows written
    assert job["progress"]["rows_written"] == 30
