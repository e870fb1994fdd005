"""A record's fields are declared once, by the writer's shape (``kbaudit.domain.RecordIn``);
the API's response models, the CSV header, the Parquet schema and the verifier's columns are
held to it here, in its order."""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel

from kbaudit.api.schemas import (
    RetrievalAuditLogDetail,
    RetrievalAuditLogSummary,
    RetrievalAuditRefView,
    RetrievalAuditScopeView,
)
from kbaudit.domain import RECORD_FIELDS, REF_FIELDS, SCOPE_FIELDS, SUMMARY_FIELDS
from kbaudit.services.exports.formats import FORMATS
from kbaudit.services.exports.parquet import REF_TYPE, SCHEMA, SCHEMA_VERSION, SCOPE_TYPE
from kbaudit.services.verify import KEY_COLUMNS


def names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def test_the_api_shows_the_fields_writers_send_in_their_order() -> None:
    assert names(RetrievalAuditLogDetail) == list(RECORD_FIELDS)
    assert names(RetrievalAuditLogSummary) == list(SUMMARY_FIELDS)
    assert names(RetrievalAuditScopeView) == list(SCOPE_FIELDS)
    assert names(RetrievalAuditRefView) == list(REF_FIELDS)


def test_the_csv_header_names_the_detail_fields_in_order() -> None:
    header = FORMATS["csv"].rendering().start().decode().removesuffix("\r\n")
    assert header.split(",") == names(RetrievalAuditLogDetail)


def test_parquet_has_a_column_for_every_field_scope_and_ref() -> None:
    assert SCHEMA.names == [*names(RetrievalAuditLogDetail), "scopes", "refs"]
    assert [field.name for field in SCOPE_TYPE] == names(RetrievalAuditScopeView)
    assert [field.name for field in REF_TYPE] == names(RetrievalAuditRefView)


def test_the_verifier_reads_columns_that_exist() -> None:
    assert set(KEY_COLUMNS) <= set(RECORD_FIELDS)


def test_parquet_columns_are_typed() -> None:
    assert SCHEMA.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert SCHEMA.field("finalized_at").type == pa.timestamp("us", tz="UTC")
    assert SCHEMA.field("result_count").type == pa.int32()
    assert SCHEMA.field("reranked").type == pa.bool_()
    assert SCHEMA.field("alpha").type == pa.float64()
    assert SCHEMA.field("ineligible_counts_by_reason").type == pa.string()
    assert SCHEMA.field("scopes").type == pa.list_(SCOPE_TYPE)
    assert SCHEMA.metadata[b"kbaudit.schema_version"] == SCHEMA_VERSION.encode()
