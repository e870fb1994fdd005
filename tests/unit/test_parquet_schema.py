"""The Parquet schema drops no field: every field of the detail view, of a scope and of a
ref has a column, typed as the issue asks."""

from __future__ import annotations

import pyarrow as pa

from kbaudit.api.schemas import RetrievalAuditLogDetail
from kbaudit.domain import RECORD_FIELDS, REF_FIELDS, SCOPE_FIELDS
from kbaudit.services.exports.parquet import REF_TYPE, SCHEMA, SCHEMA_VERSION, SCOPE_TYPE


def test_every_field_of_the_detail_view_has_a_column() -> None:
    detail = set(RetrievalAuditLogDetail.model_fields)
    assert detail - set(SCHEMA.names) == set()
    assert set(SCHEMA.names) == {*RECORD_FIELDS, "scopes", "refs"}


def test_every_field_of_scopes_and_refs_has_a_column() -> None:
    assert [field.name for field in SCOPE_TYPE] == list(SCOPE_FIELDS)
    assert [field.name for field in REF_TYPE] == list(REF_FIELDS)


def test_columns_are_typed() -> None:
    assert SCHEMA.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert SCHEMA.field("finalized_at").type == pa.timestamp("us", tz="UTC")
    assert SCHEMA.field("result_count").type == pa.int32()
    assert SCHEMA.field("reranked").type == pa.bool_()
    assert SCHEMA.field("alpha").type == pa.float64()
    assert SCHEMA.field("ineligible_counts_by_reason").type == pa.string()
    assert SCHEMA.field("scopes").type == pa.list_(SCOPE_TYPE)
    assert SCHEMA.metadata[b"kbaudit.schema_version"] == SCHEMA_VERSION.encode()
