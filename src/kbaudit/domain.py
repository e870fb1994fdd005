"""What a retrieval audit record is: its vocabularies, limits and the shape writers send.

The ingest structs are msgspec types because they validate hostile input at C speed; the HTTP
route and ``kbaudit import`` decode through the same types, so both enforce the same limits.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Final, Literal, NewType, get_args

import msgspec

OrgId = NewType("OrgId", int)
KeyId = NewType("KeyId", str)

RetrievalStatus = Literal["hit", "miss", "blocked", "error"]
# In the order a write may move forward: a finalized record never changes.
AuditWriteStatus = Literal["intent_recorded", "finalize_failed", "finalized"]
RETRIEVAL_STATUSES: Final[tuple[RetrievalStatus, ...]] = get_args(RetrievalStatus)
AUDIT_WRITE_STATUSES: Final[tuple[AuditWriteStatus, ...]] = get_args(AuditWriteStatus)

SCOPES: Final = ("kb_audit:read", "kb_audit:export", "kb_audit:write", "kb_audit:admin")

ExportFormat = Literal["csv", "ndjson", "parquet"]
EXPORT_FORMATS: Final[tuple[ExportFormat, ...]] = get_args(ExportFormat)


class JobStatus(StrEnum):
    """Where an export job is: ``pending`` -> ``running`` -> ``succeeded`` | ``partial`` |
    ``failed``, and later ``expired`` (the contract's values)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def active(self) -> bool:
        """Not ended yet: an organization may have only so many active at once."""
        return self in (JobStatus.PENDING, JobStatus.RUNNING)

    @property
    def downloadable(self) -> bool:
        """Ended with files, and not expired: tokens are minted, files are served."""
        return self in (JobStatus.SUCCEEDED, JobStatus.PARTIAL)

    @property
    def ended(self) -> bool:
        """Finalized, and not yet expired."""
        return self in (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED)


Instant = Annotated[datetime, msgspec.Meta(tz=True)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2_147_483_647)]
Code = Annotated[str, msgspec.Meta(max_length=64)]
Label = Annotated[str, msgspec.Meta(max_length=128)]
Digest = Annotated[str, msgspec.Meta(max_length=256)]
# \Z, not $: a $ would let a trailing newline through.
RefText = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{1,64}\Z")]
CountsByName = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=64)], Count], msgspec.Meta(max_length=64)
]
MAX_SCOPES_PER_RECORD: Final = 256
MAX_REFS_PER_RECORD: Final = 1000


class ScopeIn(msgspec.Struct, forbid_unknown_fields=True):
    knowledge_base_id: uuid.UUID | None = None
    requested: bool | None = None
    eligible_version_count: Count | None = None
    result_count: Count | None = None
    serving_decision: Code | None = None
    scan_policy_decision: Code | None = None
    effective_serving_status_counts: CountsByName | None = None


class RefIn(msgspec.Struct, forbid_unknown_fields=True):
    knowledge_base_id: uuid.UUID | None = None
    document_id: uuid.UUID | None = None
    document_version_id: uuid.UUID | None = None
    chunk_id: uuid.UUID | None = None
    chunk_index: Count | None = None
    chunk_stable_id: Label | None = None
    chunk_content_hash: Digest | None = None
    chunk_content_hash_key_version: Code | None = None
    document_version_content_hash: Digest | None = None
    citation_ref: Label | None = None
    source_uri_hash: Digest | None = None
    rank: Count | None = None
    score: float | None = None


class RecordIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One retrieval attempt as a writer sends it: the contract's detail fields plus children.

    Field order is the column order of the records table and of CSV exports.
    """

    ref: RefText | None = None
    id: uuid.UUID
    created_at: Instant
    retrieval_status: RetrievalStatus | None = None
    serving_decision: Code | None = None
    audit_write_status: AuditWriteStatus = "finalized"
    requested_kb_count: Count | None = None
    result_count: Count | None = None
    response_ref_count: Count | None = None
    eligible_version_count: Count | None = None
    duration_ms: Count | None = None
    actor_user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    rag_query_id: uuid.UUID | None = None
    query_hash: Digest | None = None
    query_hash_key_version: Code | None = None
    query_length_bucket: Code | None = None
    request_id: Label | None = None
    trace_id: Label | None = None
    caller: Label | None = None
    initiator_type: Code | None = None
    principal_type: Code | None = None
    permission: Label | None = None
    permission_decision: Code | None = None
    query_hash_scope: Code | None = None
    query_length: Count | None = None
    eligible_version_digest: Digest | None = None
    ineligible_counts_by_reason: CountsByName | None = None
    policy_version: Code | None = None
    eligibility_rule_version: Code | None = None
    scan_policy_version: Code | None = None
    scan_policy_decision: Code | None = None
    retrieval_config_version: Code | None = None
    embedding_model: Label | None = None
    reranker_model: Label | None = None
    top_k: Count | None = None
    effective_limit: Count | None = None
    ranking_mode: Code | None = None
    alpha: float | None = None
    reranked: bool | None = None
    error_code: Code | None = None
    error_category: Code | None = None
    intent_recorded_at: Instant | None = None
    finalized_at: Instant | None = None
    scopes: Annotated[list[ScopeIn], msgspec.Meta(max_length=MAX_SCOPES_PER_RECORD)] = []
    refs: Annotated[list[RefIn], msgspec.Meta(max_length=MAX_REFS_PER_RECORD)] = []


class RecordBatch(msgspec.Struct, forbid_unknown_fields=True):
    items: list[RecordIn]


RECORD_FIELDS: Final = tuple(f for f in RecordIn.__struct_fields__ if f not in ("scopes", "refs"))
SCOPE_FIELDS: Final = ScopeIn.__struct_fields__
REF_FIELDS: Final = RefIn.__struct_fields__
SUMMARY_FIELDS: Final = RECORD_FIELDS[: RECORD_FIELDS.index("trace_id") + 1]


# The instants kbaudit accepts, in records and in windows: an audit record of an AI agent's
# retrieval predates neither 1970 nor comes from after 2200, and every instant in this range
# converts to UTC and to microseconds without overflowing, whatever its offset.
EARLIEST_INSTANT: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT: Final = datetime(2200, 1, 1, tzinfo=UTC)
INSTANT_RANGE: Final = "from 1970-01-01T00:00:00Z up to 2200-01-01T00:00:00Z"
RECORD_INSTANTS: Final = ("created_at", "intent_recorded_at", "finalized_at")


def in_instant_range(instant: datetime) -> bool:
    try:
        utc = instant.astimezone(UTC)
    except OverflowError:  # beyond year 1 to 9999 once in UTC
        return False
    return EARLIEST_INSTANT <= utc < LATEST_INSTANT


def instant_out_of_range(record: RecordIn) -> str | None:
    """The first of the record's instants outside the accepted range, by name."""
    for name in RECORD_INSTANTS:
        instant = getattr(record, name)
        if instant is not None and not in_instant_range(instant):
            return name
    return None


def default_ref(record_id: str) -> str:
    """The ref kbaudit assigns when the writer gives none: derived from the (canonical) id,
    so that re-sending the same record is idempotent."""
    return "r" + record_id.replace("-", "")


_DERIVED_REF = re.compile(r"r[0-9a-f]{32}")


def is_derived_ref(text: str) -> bool:
    return _DERIVED_REF.fullmatch(text) is not None


def id_named_by(text: str) -> uuid.UUID | None:
    """The record id that ``text`` names as a derived ref or as an id, if it is one."""
    if is_derived_ref(text):
        return uuid.UUID(text[1:])
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


Edge = Literal["api", "console", "cli"]


@dataclass(frozen=True, slots=True)
class Via:
    """Where a call came in: the edge, and the route (method and path template) it took
    there, as the edge names it; services never name routes themselves."""

    edge: Edge
    route: str


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: an API key, its organization, what it may do, from which address and
    through which route (``None``: code calling the services directly)."""

    org_id: OrgId
    key_id: KeyId
    scopes: frozenset[str]
    client_address: str | None = None
    via: Via | None = None
