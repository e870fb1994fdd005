"""The SDK's reader behind ``kbaudit export download``, against the real API: checksums,
stale tokens, compressed transfers and downloads that resume."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kbaudit.domain import OrgId
from kbaudit_sdk import AuditReader, IntegrityError
from tests.conftest import Api, ManualClock
from tests.helpers import SIGNED_FILES, seed_demo, start_export


class StaleFirstView(AuditReader):
    """Hands out, once, a job view given to it (one whose tokens were minted long ago)."""

    def __init__(self, stale: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stale: dict[str, Any] | None = stale
        self.views = 0

    def job(self, export_id: str) -> dict[str, Any]:
        self.views += 1
        if self.stale is not None:
            stale, self.stale = self.stale, None
            return stale
        return super().job(export_id)


@pytest.fixture
def exported(api: Api) -> tuple[Api, str, str]:
    key = api.key()["x-api-key"]
    seed_demo(api, {"x-api-key": key}, 30)
    return api, key, start_export(api, {"x-api-key": key})["id"]


def sent(api: Api) -> list[dict[str, Any]]:
    """The access log's entries of file downloads, oldest first."""
    api.container.store.flush_access()
    with api.container.store.reading() as uow:
        entries = uow.access_log.entries(OrgId(1))
    return [entry.details for entry in entries if entry.action == "export_downloaded"]


def test_download_verifies_and_keeps_the_files(
    exported: tuple[Api, str, str], tmp_path: Path
) -> None:
    api, key, export_id = exported
    reader = AuditReader("", key, http=api.client)
    paths = reader.download(export_id, tmp_path / "out")
    view = reader.job(export_id)
    assert [path.name for path in paths] == ["kb-audit-00001.csv", *SIGNED_FILES]
    for path, file in zip(paths, view["files"], strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == file["sha256_plaintext"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["kb-audit-00001.csv", *SIGNED_FILES]
    )
    # The data file crossed the wire as its stored zstd stream, and was decoded here.
    [data, *_] = sent(api)
    assert data["encoding"] == "zstd"
    assert data["bytes"] < paths[0].stat().st_size


def test_a_download_cut_short_resumes_where_it_stopped(
    exported: tuple[Api, str, str], tmp_path: Path
) -> None:
    api, key, export_id = exported
    reader = AuditReader("", key, http=api.client)
    whole = reader.download(export_id, tmp_path / "first")[0].read_bytes()
    out = tmp_path / "second"
    out.mkdir()
    (out / ".kb-audit-00001.csv.partial").write_bytes(whole[:1000])
    [path, *_] = reader.download(export_id, out)
    assert path.read_bytes() == whole
    assert not (out / ".kb-audit-00001.csv.partial").exists()
    resumed = [details for details in sent(api) if details["file"] == path.name][-1]
    assert resumed["bytes"] == len(whole) - 1000


def test_an_expired_token_is_replaced_by_viewing_again(
    exported: tuple[Api, str, str], clock: ManualClock, tmp_path: Path
) -> None:
    api, key, export_id = exported
    stale = AuditReader("", key, http=api.client).job(export_id)
    clock.now += timedelta(seconds=api.container.settings.download_token_ttl_seconds + 5)
    reader = StaleFirstView(stale, base_url="", api_key=key, http=api.client)
    paths = reader.download(export_id, tmp_path / "out")
    assert all(path.exists() for path in paths)
    assert reader.views == 2


def test_a_checksum_mismatch_keeps_nothing(exported: tuple[Api, str, str], tmp_path: Path) -> None:
    api, key, export_id = exported
    view = AuditReader("", key, http=api.client).job(export_id)
    view["files"][0]["sha256_plaintext"] = "0" * 64
    reader = StaleFirstView(view, base_url="", api_key=key, http=api.client)
    with pytest.raises(IntegrityError, match="does not match its SHA-256"):
        reader.download(export_id, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
