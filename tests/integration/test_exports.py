"""Exports end to end on the embedded default (tasks inline): what comes out of the files is
exactly what the query route shows, and the counts say what happened."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from kbaudit.document import document_of
from kbaudit.domain import RECORD_FIELDS, SUMMARY_FIELDS, RecordIn
from tests.conftest import Api, ManualClock
from tests.helpers import (
    DEMO_WINDOW,
    EXPORTS,
    RECORDS,
    download_all,
    record,
    seed_demo,
    start_export,
    view_export,
)

FILTER_CASES: dict[str, dict[str, Any]] = {
    "everything": {},
    "blocked and errors": {"statuses": ["blocked", "error"]},
    "narrow window": {"start": "2026-05-10T00:00:00Z", "end": "2026-05-20T12:00:00Z"},
}


def query_all(api: Api, key: dict[str, str], body: dict[str, Any]) -> list[dict[str, Any]]:
    params = {**DEMO_WINDOW, **body, "limit": 200}
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.client.get(RECORDS, params={**params, "cursor": cursor}, headers=key).json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows[::-1]  # the export is oldest first


def parse_csv(files: list[tuple[str, bytes]]) -> list[dict[str, str]]:
    rows = []
    for _, content in files:
        reader = csv.DictReader(io.StringIO(content.decode()))
        assert reader.fieldnames == list(RECORD_FIELDS)
        rows += list(reader)
    return rows


def parse_ndjson(files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    return [json.loads(line) for _, content in files for line in content.splitlines()]


def as_csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return str(value)


@pytest.mark.parametrize("rows_per_file", [7, 50, 100_000])
@pytest.mark.parametrize("export_format", ["csv", "ndjson"])
@pytest.mark.parametrize("body", FILTER_CASES.values(), ids=FILTER_CASES.keys())
def test_files_hold_exactly_the_query_rows_in_order(
    make_api: Callable[..., Api], rows_per_file: int, export_format: str, body: dict[str, Any]
) -> None:
    api = make_api(export_rows_per_file=rows_per_file)
    key = api.key()
    seed_demo(api, key, 120)
    job = start_export(api, key, export_format=export_format, **body)
    assert job["status"] == "pending"
    done = view_export(api, key, job["id"])
    assert done["status"] == "succeeded", done
    expected = query_all(api, key, body)
    files = download_all(api, key, job["id"])
    got = parse_csv(files) if export_format == "csv" else parse_ndjson(files)
    assert [row["id"] for row in got] == [row["id"] for row in expected]
    for exported, queried in zip(got, expected, strict=True):
        for name in SUMMARY_FIELDS:
            want = queried[name]
            if name == "created_at":
                assert exported[name].replace(".000000", "") in (
                    want,
                    want.replace("Z", ".000000Z"),
                )
            elif export_format == "csv":
                assert exported[name] == as_csv_text(want), name
            else:
                assert exported[name] == want, name
    assert done["total_rows"] == len(expected)
    assert len(files) == max(1, -(-len(expected) // rows_per_file))
    assert [name for name, _ in files] == [
        f"kb-audit-{n:05d}.{export_format}" for n in range(1, len(files) + 1)
    ]


def test_ndjson_is_lossless(api: Api) -> None:
    key = api.key()
    records = seed_demo(api, key, 60)
    job = start_export(api, key, export_format="ndjson")
    exported = {row["id"]: row for row in parse_ndjson(download_all(api, key, job["id"]))}
    for written in records:
        sent = msgspec.to_builtins(written)
        row = exported[sent["id"]]
        assert row["ref"] == "r" + sent["id"].replace("-", "")
        for name, value in sent.items():
            if name in ("scopes", "refs"):
                strip = [{k: v for k, v in item.items()} for item in row[name]]
                assert strip == value, name
            elif name == "ref":
                continue
            elif name in ("created_at", "intent_recorded_at", "finalized_at") and value:
                assert row[name].replace(".000000Z", "Z") == value.replace("+00:00", "Z")
            else:
                assert row[name] == value, name


def test_ndjson_lines_are_the_stored_documents_byte_for_byte(api: Api) -> None:
    """Text that escapes (backslashes, quotes, control characters, other scripts) and text
    that looks like the status's JSON comes out exactly as stored, and is counted right."""
    key = api.key()
    hostile = [
        "back\\slash \\\\ two",
        'quote " and \\"',
        "line\nbreak\ttab\r\u0001",
        "üñï €𝄞",
        '"audit_write_status":"finalized"',
    ]
    items = [
        record(
            created_at=f"2026-05-01T10:00:0{i}Z",
            caller=text,
            audit_write_status="finalized" if i % 2 else "intent_recorded",
        )
        for i, text in enumerate(hostile)
    ]
    assert api.client.post(RECORDS, json={"items": items}, headers=key).status_code == 200
    job = start_export(api, key, export_format="ndjson")
    [(_, body)] = download_all(api, key, job["id"])
    expected = [document_of(msgspec.convert(item, RecordIn)).body.encode() for item in items]
    assert body.split(b"\n") == [*expected, b""]
    assert [row["caller"] for row in parse_ndjson([("", body)])] == hostile
    assert view_export(api, key, job["id"])["partial_count"] == 3


def test_ndjson_keeps_every_bit_of_floats(api: Api) -> None:
    key = api.key()
    awkward = [0.30000000000000004, 1 / 3, 1e-300, -2.5, 123456789.12345678]
    items = [
        record(created_at=f"2026-05-01T10:00:0{i}Z", alpha=value, refs=[{"score": value}])
        for i, value in enumerate(awkward)
    ]
    assert api.client.post(RECORDS, json={"items": items}, headers=key).status_code == 200
    job = start_export(api, key, export_format="ndjson")
    rows = parse_ndjson(download_all(api, key, job["id"]))
    assert [row["alpha"] for row in rows] == awkward
    assert [row["refs"][0]["score"] for row in rows] == awkward


def test_csv_neutralizes_formulas_and_quotes(api: Api) -> None:
    key = api.key()
    seed_demo(api, key, 40)
    job = start_export(api, key, export_format="csv")
    rows = parse_csv(download_all(api, key, job["id"]))
    callers = {row["caller"] for row in rows}
    assert "'=cmd|' /C calc'!A0" in callers
    assert not any(value.startswith("=") for row in rows for value in row.values())
    assert all(json.loads(row["ineligible_counts_by_reason"]) for row in rows)


def test_counts_report_records_still_intent_recorded(api: Api) -> None:
    key = api.key()
    records = seed_demo(api, key, 200)
    intents = sum(1 for record in records if record.audit_write_status == "intent_recorded")
    assert intents > 0
    job = start_export(api, key)
    done = view_export(api, key, job["id"])
    assert done["partial_count"] == intents
    assert done["failed_count"] == 0
    assert done["error_code"] is None


def test_records_written_after_the_snapshot_stay_out(api: Api) -> None:
    key = api.key()
    seed_demo(api, key, 30)
    # The inline queue runs the job as it is created; a second job sees the later record.
    first = start_export(api, key)
    seed_demo(api, key, 5, seed=99)
    second = start_export(api, key)
    assert view_export(api, key, first["id"])["total_rows"] == 30
    assert view_export(api, key, second["id"])["total_rows"] == 35


def test_an_empty_export_succeeds_with_one_header_only_file(api: Api) -> None:
    key = api.key()
    job = start_export(api, key)
    done = view_export(api, key, job["id"])
    assert (done["status"], done["total_rows"]) == ("succeeded", 0)
    [(name, content)] = download_all(api, key, job["id"])
    assert name == "kb-audit-00001.csv"
    assert content == (",".join(RECORD_FIELDS) + "\r\n").encode()


def test_list_is_newest_first_with_cursor_and_status_filter(
    make_api: Callable[..., Api], clock: ManualClock
) -> None:
    api = make_api(export_max_active_per_org=10)
    key = api.key()
    made = []
    for _ in range(5):
        clock.now += timedelta(seconds=1)
        made.append(start_export(api, key)["id"])
    seen, cursor = [], None
    while True:
        page = api.client.get(EXPORTS, params={"limit": 2, "cursor": cursor}, headers=key).json()
        seen += [item["id"] for item in page["items"]]
        assert all(item["files"][0]["download_token"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]
    failed = api.client.get(EXPORTS, params={"status": "failed"}, headers=key).json()
    assert failed["items"] == []
    bad = api.client.get(EXPORTS, params={"status": "done"}, headers=key)
    assert bad.status_code == 422
