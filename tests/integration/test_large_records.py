"""Records of megabytes (a thousand refs with every text at its longest) export in every
format, read in batches bounded by bytes rather than by a count of rows."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pyarrow.parquet as pq
import pytest

from kbaudit import demo
from kbaudit.domain import EXPORT_FORMATS
from kbaudit.filters import RecordFilters
from tests.conftest import WINDOW, Api
from tests.helpers import RECORDS, download_all, start_export, view_export


def largest_record(minute: int) -> dict[str, Any]:
    made = demo.largest_record(datetime(2026, 5, 1, 10, minute, tzinfo=UTC))
    as_sent: dict[str, Any] = msgspec.to_builtins(made)
    return as_sent


@pytest.fixture
def large(make_api: Callable[..., Api]) -> tuple[Api, dict[str, str], list[dict[str, Any]]]:
    api = make_api()
    key = api.key()
    written = [largest_record(minute) for minute in range(5)]
    for item in written:
        response = api.client.post(RECORDS, json={"items": [item]}, headers=key)
        assert response.status_code == 200, response.text[:300]
    return api, key, written


def test_each_record_is_over_a_megabyte(
    large: tuple[Api, dict[str, str], list[dict[str, Any]]],
) -> None:
    _, _, written = large
    assert min(len(orjson.dumps(item)) for item in written) > 1024 * 1024


@pytest.mark.parametrize("export_format", EXPORT_FORMATS)
def test_records_of_megabytes_export_in_every_format(
    large: tuple[Api, dict[str, str], list[dict[str, Any]]], export_format: str
) -> None:
    api, key, written = large
    job = view_export(api, key, start_export(api, key, export_format=export_format)["id"])
    assert job["status"] == "succeeded", job
    assert job["total_rows"] == len(written)
    [(_, content)] = download_all(api, key, job["id"])
    if export_format == "parquet":
        table = pq.read_table(io.BytesIO(content))
        assert [len(refs) for refs in table.column("refs").to_pylist()] == [1000] * 5
        assert (
            table.column("refs").to_pylist()[4][999]["chunk_content_hash"]
            == (written[4]["refs"][999]["chunk_content_hash"])
        )
    elif export_format == "ndjson":
        rows = [orjson.loads(line) for line in content.splitlines()]
        assert [row["id"] for row in rows] == [item["id"] for item in written]
        assert rows[2]["refs"][500]["citation_ref"] == written[2]["refs"][500]["citation_ref"]
    else:
        assert content.count(b"\n") > len(written)


def test_batches_are_bounded_by_bytes(
    large: tuple[Api, dict[str, str], list[dict[str, Any]]],
) -> None:
    api, key, written = large
    org_id = api.container.authenticate(key["x-api-key"]).org_id
    filters = RecordFilters.model_validate(WINDOW)
    size = len(orjson.dumps(written[0]))
    with api.container.store.streaming() as uow:
        seq = uow.records.newest_seq()
        batches = list(
            uow.records.export_documents(org_id, filters, seq, None, None, batch_bytes=size)
        )
    assert sum(batch.rows for batch in batches) == len(written)
    # Each batch passes its bytes by less than a few records (SQLite's are fetched 4 at a
    # time); 2,000 rows at a time would have taken all five at once.
    assert max(batch.rows for batch in batches) <= 4
    assert len(batches) >= 2
