"""Parquet exports, read back as their users read them: DuckDB and Polars open the files as
downloaded, and every value equals the record's canonical document."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest

from kbaudit.services.exports import parquet
from kbaudit.services.verify import VerificationFailed, read_keys, verify_export
from tests.conftest import Api
from tests.helpers import (
    RECORDS,
    data_files,
    download_all,
    record,
    seed_demo,
    start_export,
    view_export,
)


def export(api: Api, key: dict[str, str], **body: Any) -> tuple[dict[str, Any], list[Any]]:
    job = view_export(api, key, start_export(api, key, **body)["id"])
    assert job["status"] == "succeeded", job
    return job, download_all(api, key, job["id"], manifest=True)


def by_id(ndjson_files: list[tuple[str, bytes]]) -> dict[str, dict[str, Any]]:
    documents = [
        orjson.loads(line)
        for name, content in ndjson_files
        if name.endswith(".ndjson")
        for line in content.splitlines()
    ]
    return {document["id"]: document for document in documents}


def as_document_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return value


@pytest.fixture
def exported(make_api: Callable[..., Api], tmp_path: Path) -> tuple[Api, dict[str, str], Path]:
    api = make_api(export_rows_per_file=40)
    key = api.key()
    seed_demo(api, key, 100)
    odd = record(
        created_at="2026-05-02T00:00:00Z",
        caller='quote " and \\ backslash',
        ineligible_counts_by_reason={'a"}b': 1, "z": 2},
        scopes=[{"knowledge_base_id": None, "effective_serving_status_counts": {"}": 3}}],
    )
    assert api.client.post(RECORDS, json={"items": [odd]}, headers=key).status_code == 200
    return api, key, tmp_path


def test_duckdb_and_polars_read_the_files_as_downloaded(
    exported: tuple[Api, dict[str, str], Path],
) -> None:
    api, key, folder = exported
    job, files = export(api, key, export_format="parquet")
    assert [f["name"] for f in data_files(job)] == [
        "kb-audit-00001.parquet",
        "kb-audit-00002.parquet",
        "kb-audit-00003.parquet",
    ]
    for name, content in files:
        (folder / name).write_bytes(content)
    pattern = str(folder / "*.parquet")
    files_read = duckdb.read_parquet(pattern)
    [(count,)] = files_read.aggregate("count(*)").fetchall()
    assert count == job["total_rows"] == 101
    assert pl.scan_parquet(pattern).select(pl.len()).collect().item() == 101
    kinds = dict(zip(files_read.columns, map(str, files_read.types), strict=True))
    assert kinds["created_at"] == "TIMESTAMP WITH TIME ZONE"
    assert kinds["top_k"] == "INTEGER"
    metadata = pq.ParquetFile(folder / "kb-audit-00001.parquet").schema_arrow.metadata
    assert metadata[b"kbaudit.schema_version"] == parquet.SCHEMA_VERSION.encode()


def test_every_value_equals_the_records_document(
    exported: tuple[Api, dict[str, str], Path],
) -> None:
    api, key, _ = exported
    _, parquet_files = export(api, key, export_format="parquet")
    _, ndjson_files = export(api, key, export_format="ndjson")
    documents = by_id(ndjson_files)
    rows = [
        row
        for name, content in parquet_files
        if name.endswith(".parquet")
        for row in pq.read_table(io.BytesIO(content)).to_pylist()
    ]
    assert len(rows) == len(documents) == 101
    for row in rows:
        document = documents[row["id"]]
        for name in parquet.SCHEMA.names:
            value = row[name]
            if name in parquet.JSON_FIELDS and value is not None:
                value = orjson.loads(value)
            if name in ("scopes", "refs"):
                value = [
                    {
                        k: orjson.loads(v) if k in parquet.JSON_FIELDS and v is not None else v
                        for k, v in item.items()
                    }
                    for item in value
                ]
            assert as_document_value(value) == document[name], (row["id"], name)


def test_a_parquet_export_verifies_and_a_changed_row_does_not(
    exported: tuple[Api, dict[str, str], Path],
) -> None:
    api, key, folder = exported
    _job, files = export(api, key, export_format="parquet")
    for name, content in files:
        (folder / name).write_bytes(content)
    keys = read_keys(api.client.get("/v1/knowledge-base/audit/signing-keys").text)
    assert verify_export(folder, keys).rows == 101
    first = folder / "kb-audit-00001.parquet"
    content = bytearray(first.read_bytes())
    content[100] ^= 1
    first.write_bytes(bytes(content))
    with pytest.raises(VerificationFailed, match="SHA-256"):
        verify_export(folder, keys)


def test_row_groups_hold_at_most_the_row_group_size(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 30)
    monkeypatch.setattr(parquet, "PARSE_ROWS", 7)
    api = make_api()
    key = api.key()
    seed_demo(api, key, 100)
    _, files = export(api, key, export_format="parquet")
    metadata = pq.ParquetFile(io.BytesIO(files[0][1])).metadata
    sizes = [metadata.row_group(n).num_rows for n in range(metadata.num_row_groups)]
    assert sum(sizes) == 100
    assert max(sizes) <= 30 + 7
    assert len(sizes) >= 3
