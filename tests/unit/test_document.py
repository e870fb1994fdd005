"""The canonical record document is RFC 8785 JSON, byte for byte, on every kind of value."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import orjson
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from kbaudit.document import (
    canonical_json,
    document_of,
    instant_text,
    leaf_of,
    micros,
    number_json,
)
from kbaudit.domain import RecordIn

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=("Cs",))), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_canonical_json_is_what_the_reference_encoder_writes(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    # U+E000 sorts after U+1F600 by code point, before it in UTF-16 (a surrogate pair).
    value = {"\ue000": 1, "\U0001f600": 2, "a": 3}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value).index("\U0001f600".encode()) < canonical_json(value).index(
        "\ue000".encode()
    )


def test_numbers_are_written_as_ecmascript_does() -> None:
    assert canonical_json([100.0, 1e21, 1.5e-6, 0.1]) == b"[100,1e+21,0.0000015,0.1]"


EDGES = [1e-4, -1e-4, 9.999999999999999e-5, 1e16, 9.999999999999998e15, 0.1 + 0.2, -0.0, 5e-324]


@given(st.sampled_from(EDGES) | st.floats(-1e17, 1e17) | st.floats(-1e-3, 1e-3) | st.floats())
def test_the_quick_number_path_writes_what_the_reference_encoder_does(value: float) -> None:
    if math.isfinite(value):
        assert number_json(value) == rfc8785.dumps(value)


def test_instants_are_utc_with_microseconds_in_one_width() -> None:
    east = timezone(timedelta(hours=2))
    assert instant_text(datetime(2026, 1, 2, 5, 4, 5, tzinfo=east)) == "2026-01-02T03:04:05.000000Z"
    assert micros(datetime(1970, 1, 1, 0, 0, 0, 7, tzinfo=UTC)) == 7


def test_a_document_holds_every_field_and_derives_its_ref() -> None:
    record_id = uuid.uuid4()
    kb = uuid.uuid4()
    record = msgspec.convert(
        {
            "id": str(record_id),
            "created_at": "2026-01-02T03:04:05+01:00",
            "alpha": 0.5,
            "scopes": [{"knowledge_base_id": str(kb)}, {"knowledge_base_id": str(kb)}],
            "refs": [{"score": 2.0}],
        },
        RecordIn,
    )
    document = document_of(record)
    body = msgspec.json.decode(document.body)
    assert set(body) == set(RecordIn.__struct_fields__)
    assert body["ref"] == document.ref == "r" + record_id.hex
    assert document.chosen_ref is None
    assert body["created_at"] == "2026-01-02T02:04:05.000000Z"
    assert document.kb_ids == (kb,)
    assert document.body.encode() == rfc8785.dumps(msgspec.json.decode(document.body))
    assert document_of(record, ref="case-1").chosen_ref == "case-1"


counts = st.dictionaries(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=8), st.integers(0, 9), max_size=3
)
numbers = st.none() | st.floats(allow_nan=False, allow_infinity=False)


@given(alpha=numbers, score=numbers, top=st.none() | counts, scope=st.none() | counts)
def test_a_record_document_is_the_reference_encoding_of_its_fields(
    alpha: float | None,
    score: float | None,
    top: dict[str, int] | None,
    scope: dict[str, int] | None,
) -> None:
    record = msgspec.convert(
        {
            "id": str(uuid.uuid4()),
            "created_at": "2026-01-02T03:04:05.5-07:00",
            "intent_recorded_at": "2026-01-02T10:04:05.000123Z",
            "finalized_at": "2026-01-02T10:04:06Z",
            "alpha": alpha,
            "ineligible_counts_by_reason": top,
            "scopes": [{"effective_serving_status_counts": scope}],
            "refs": [{"score": score}],
        },
        RecordIn,
    )
    fields = msgspec.to_builtins(record, builtin_types=(datetime,))
    fields["ref"] = "r" + record.id.hex
    assert document_of(record).body.encode() == rfc8785.dumps(
        {k: instant_text(v) if isinstance(v, datetime) else v for k, v in fields.items()}
    )


# Reading the document back turns a whole float into an int; keep those within 2^53.
safe_numbers = st.none() | st.floats(-1e15, 1e15)


@given(score=safe_numbers, top=st.none() | counts)
def test_a_log_leaf_is_the_reference_encoding_of_the_write(
    score: float | None, top: dict[str, int] | None
) -> None:
    record = msgspec.convert(
        {
            "id": str(uuid.uuid4()),
            "created_at": "2026-01-02T03:04:05Z",
            "audit_write_status": "finalized",
            "ineligible_counts_by_reason": top,
            "refs": [{"score": score}],
        },
        RecordIn,
    )
    document = document_of(record).body
    org = str(uuid.uuid4())
    leaf = leaf_of(org, str(record.id), "finalized", document)
    assert leaf == rfc8785.dumps(
        {
            "organization_id": org,
            "record_id": str(record.id),
            "audit_write_status": "finalized",
            "record": orjson.loads(document),
        }
    )
