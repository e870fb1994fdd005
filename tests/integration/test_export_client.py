"""The export client behind ``kbaudit export download``: checksums and stale tokens."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kbaudit.client import ClientError, ExportClient
from kbaudit.domain import OrgId
from tests.conftest import Api, ManualClock
from tests.helpers import SIGNED_FILES, seed_demo, start_export


class StaleFirstView(ExportClient):
    """Hands out, once, a job view whose tokens were minted long ago."""

    def __init__(self, stale: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stale: dict[str, Any] | None = stale
        self.views = 0

    def get(self, export_id: str) -> dict[str, Any]:
        self.views += 1
        if self.stale is not None:
            stale, self.stale = self.stale, None
            return stale
        return super().get(export_id)


@pytest.fixture
def exported(api: Api) -> tuple[Api, str, str]:
    key = api.key()["x-api-key"]
    seed_demo(api, {"x-api-key": key}, 30)
    return api, key, start_export(api, {"x-api-key": key})["id"]


def test_download_verifies_and_keeps_the_files(
    exported: tuple[Api, str, str], tmp_path: Path
) -> None:
    api, key, export_id = exported
    client = ExportClient("", key, http=api.client)
    paths = client.download(export_id, tmp_path / "out")
    view = client.get(export_id)
    assert [path.name for path in paths] == ["kb-audit-00001.csv", *SIGNED_FILES]
    for path, file in zip(paths, view["files"], strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == file["sha256_plaintext"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["kb-audit-00001.csv", *SIGNED_FILES]
    )
    # The data file crossed the wire as its stored zstd stream, and was decoded here.
    api.container.store.flush_access()
    with api.container.store.reading() as uow:
        entries = uow.access_log.entries(OrgId(1))
    sent = {e.details["file"]: e.details for e in entries if e.action == "export_downloaded"}
    assert sent["kb-audit-00001.csv"]["encoding"] == "zstd"
    assert sent["kb-audit-00001.csv"]["bytes"] < paths[0].stat().st_size


def test_an_expired_token_is_replaced_by_viewing_again(
    exported: tuple[Api, str, str], clock: ManualClock, tmp_path: Path
) -> None:
    api, key, export_id = exported
    stale = ExportClient("", key, http=api.client).get(export_id)
    clock.now += timedelta(seconds=api.container.settings.download_token_ttl_seconds + 5)
    client = StaleFirstView(stale, base_url="", api_key=key, http=api.client)
    paths = client.download(export_id, tmp_path / "out")
    assert all(path.exists() for path in paths)
    assert client.views == 2


def test_a_checksum_mismatch_keeps_nothing(exported: tuple[Api, str, str], tmp_path: Path) -> None:
    api, key, export_id = exported
    view = ExportClient("", key, http=api.client).get(export_id)
    view["files"][0]["sha256_plaintext"] = "0" * 64
    client = StaleFirstView(view, base_url="", api_key=key, http=api.client)
    with pytest.raises(ClientError, match="checksum mismatch"):
        client.download(export_id, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
