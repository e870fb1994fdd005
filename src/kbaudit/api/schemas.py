"""Response and request shapes of the HTTP API, field for field as the Feather contract has
them (``shared/contract/feather-kb-audit-openapi.json``); the contract test holds them to it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kbaudit.domain import ExportFormat
from kbaudit.filters import RecordFilters
from kbaudit.services.exports.jobs import ExportSpec

Item = TypeVar("Item")


class ErrorResponse(BaseModel):
    """Standard error response returned by all API error handlers."""

    error: str
    message: str
    retryable: bool | None = None
    retry_after: int | None = None


class CursorPage(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None = None
    has_more: bool


class RetrievalAuditLogSummary(BaseModel):
    """List-row view of one retrieval attempt."""

    model_config = ConfigDict(from_attributes=True)

    ref: str = ""
    id: UUID
    created_at: datetime
    retrieval_status: str | None = None
    serving_decision: str | None = None
    audit_write_status: str | None = None
    requested_kb_count: int | None = None
    result_count: int | None = None
    response_ref_count: int | None = None
    eligible_version_count: int | None = None
    duration_ms: int | None = None
    actor_user_id: UUID | None = None
    session_id: UUID | None = None
    agent_id: UUID | None = None
    rag_query_id: UUID | None = None
    query_hash: str | None = None
    query_hash_key_version: str | None = None
    query_length_bucket: str | None = None
    request_id: str | None = None
    trace_id: str | None = None


class RetrievalAuditLogDetail(RetrievalAuditLogSummary):
    """Detail view: adds policy/config/error context (still hashes/ids only)."""

    caller: str | None = None
    initiator_type: str | None = None
    principal_type: str | None = None
    permission: str | None = None
    permission_decision: str | None = None
    query_hash_scope: str | None = None
    query_length: int | None = None
    eligible_version_digest: str | None = None
    ineligible_counts_by_reason: dict[str, Any] | None = None
    policy_version: str | None = None
    eligibility_rule_version: str | None = None
    scan_policy_version: str | None = None
    scan_policy_decision: str | None = None
    retrieval_config_version: str | None = None
    embedding_model: str | None = None
    reranker_model: str | None = None
    top_k: int | None = None
    effective_limit: int | None = None
    ranking_mode: str | None = None
    alpha: float | None = None
    reranked: bool | None = None
    error_code: str | None = None
    error_category: str | None = None
    intent_recorded_at: datetime | None = None
    finalized_at: datetime | None = None


class RetrievalAuditScopeView(BaseModel):
    """One requested-KB scope of a retrieval (present even for misses/blocks)."""

    knowledge_base_id: UUID | None = None
    requested: bool | None = None
    eligible_version_count: int | None = None
    result_count: int | None = None
    serving_decision: str | None = None
    scan_policy_decision: str | None = None
    effective_serving_status_counts: dict[str, Any] | None = None


class RetrievalAuditRefView(BaseModel):
    """One returned chunk reference: hashes/ids/rank/score only."""

    knowledge_base_id: UUID | None = None
    document_id: UUID | None = None
    document_version_id: UUID | None = None
    chunk_id: UUID | None = None
    chunk_index: int | None = None
    chunk_stable_id: str | None = None
    chunk_content_hash: str | None = None
    chunk_content_hash_key_version: str | None = None
    document_version_content_hash: str | None = None
    citation_ref: str | None = None
    source_uri_hash: str | None = None
    rank: int | None = None
    score: float | None = None


class RetrievalAuditDetailResponse(BaseModel):
    """A retrieval log plus its scopes (incl. misses/blocks) and chunk refs."""

    log: RetrievalAuditLogDetail
    scopes: list[RetrievalAuditScopeView]
    refs: list[RetrievalAuditRefView]


class IngestItemResult(BaseModel):
    id: UUID
    ref: str
    outcome: Literal["created", "updated", "unchanged"]


class IngestResponse(BaseModel):
    """What a batch write did, record by record (kbaudit's own addition)."""

    items: list[IngestItemResult]
    created: int
    updated: int
    unchanged: int


AgeRecipients = Annotated[
    list[Annotated[str, Field(max_length=200)]], Field(min_length=1, max_length=10)
]


class ExportRequest(RecordFilters):
    """POST body for an async encrypted audit export: the query's window and filters, and
    how to deliver. Unknown fields are refused: a misspelt filter (``status`` for
    ``statuses``) would otherwise export everything."""

    model_config = ConfigDict(extra="forbid")

    export_format: ExportFormat = Field("csv", description="`parquet` is kbaudit's addition.")
    recipients: AgeRecipients | None = Field(
        None,
        description="kbaudit's addition: age X25519 recipients (`age1...`); every file is "
        "delivered as an age file encrypted to all of them.",
    )
    destination: Annotated[str, Field(max_length=64)] | None = Field(
        None,
        description="kbaudit's addition: the name of a destination the files are copied to "
        "when the export ends.",
    )

    def spec(self) -> ExportSpec:
        return ExportSpec(
            self.export_format, self.only_filters(), tuple(self.recipients or ()), self.destination
        )


class ExportFileStatus(BaseModel):
    """Per-file status; ``download_token`` is present only when downloadable."""

    name: str
    sha256_plaintext: str | None = None
    download_token: str | None = None
    sha256_delivered: str | None = Field(
        None, description="kbaudit's addition: the SHA-256 of the age file, for recipients."
    )


class ExportDelivery(BaseModel):
    """kbaudit's addition: the copy of the files to a destination."""

    destination: str
    status: Literal["pending", "delivered", "failed"]
    error: str | None = None


class ExportProgress(BaseModel):
    """kbaudit's addition: how far the workers are."""

    parts_total: int
    parts_done: int
    rows_written: int


class ExportJobResponse(BaseModel):
    """Status view of an export job (with per-file download tokens when ready)."""

    id: UUID
    status: str
    export_format: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    created_at: datetime
    started_at: datetime | None = None
    finalized_at: datetime | None = None
    expires_at: datetime | None = None
    total_rows: int | None = None
    partial_count: int | None = None
    failed_count: int | None = None
    error_code: str | None = None
    filters: dict[str, Any] | None = None
    files: list[ExportFileStatus] = []
    progress: ExportProgress | None = None
    recipients: list[str] | None = None
    delivery: ExportDelivery | None = None


class RetentionPolicyResponse(BaseModel):
    """Org audit-retention policy + legal-hold state."""

    id: UUID
    organization_id: UUID
    retention_days: int
    legal_hold_enabled: bool
    legal_hold_reason: str | None = None
    legal_hold_set_by: UUID | None = None
    legal_hold_set_at: datetime | None = None
    archive_before_delete: bool
    archive_destination: str | None = None
    policy_version: str | None = None
    created_at: datetime
    updated_at: datetime


class RetentionPolicyUpdateRequest(BaseModel):
    """PUT body for the retention policy: only the fields given change. Strict: a policy
    that guards deletion takes ``true``, not ``"yes"``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    retention_days: Annotated[int, Field(ge=90)] | None = None  # the ceiling: see services
    legal_hold_enabled: bool | None = None
    legal_hold_reason: Annotated[str, Field(max_length=500)] | None = None
    archive_before_delete: bool | None = None
    archive_destination: (
        Annotated[str, Field(max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")] | None
    ) = None


class StatsGroup(BaseModel):
    key: str | None = Field(description="The status, knowledge base, agent or decision.")
    count: int
    duration_ms_p50: float | None = Field(
        description="Found within a bin of durations a factor 1.25 wide, placed linearly in it."
    )
    duration_ms_p95: float | None


class StatsBucket(BaseModel):
    start: AwareDatetime
    groups: list[StatsGroup]


class StatsResponse(BaseModel):
    interval: Literal["hour", "day"]
    group_by: Literal["status", "kb_id", "agent_id", "serving_decision"]
    buckets: list[StatsBucket]
    totals: list[StatsGroup]
