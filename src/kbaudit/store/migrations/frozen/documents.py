"""A record's canonical document as revision 0006 wrote it: every detail field of the record
(``None`` where it had none), plus ``ref``, ``scopes`` and ``refs``, each scope and ref with all
of its fields, as RFC 8785 JSON; instants as UTC text with microseconds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import rfc8785

RECORD_FIELDS = (
    "ref", "id", "created_at", "retrieval_status", "serving_decision", "audit_write_status",
    "requested_kb_count", "result_count", "response_ref_count", "eligible_version_count",
    "duration_ms", "actor_user_id", "session_id", "agent_id", "rag_query_id", "query_hash",
    "query_hash_key_version", "query_length_bucket", "request_id", "trace_id", "caller",
    "initiator_type", "principal_type", "permission", "permission_decision",
    "query_hash_scope", "query_length", "eligible_version_digest",
    "ineligible_counts_by_reason", "policy_version", "eligibility_rule_version",
    "scan_policy_version", "scan_policy_decision", "retrieval_config_version",
    "embedding_model", "reranker_model", "top_k", "effective_limit", "ranking_mode", "alpha",
    "reranked", "error_code", "error_category", "intent_recorded_at", "finalized_at",
)  # fmt: skip
SCOPE_FIELDS = (
    "knowledge_base_id", "requested", "eligible_version_count", "result_count",
    "serving_decision", "scan_policy_decision", "effective_serving_status_counts",
)  # fmt: skip
REF_FIELDS = (
    "knowledge_base_id", "document_id", "document_version_id", "chunk_id", "chunk_index",
    "chunk_stable_id", "chunk_content_hash", "chunk_content_hash_key_version",
    "document_version_content_hash", "citation_ref", "source_uri_hash", "rank", "score",
)  # fmt: skip
UUIDS = {
    "id", "actor_user_id", "session_id", "agent_id", "rag_query_id", "knowledge_base_id",
    "document_id", "document_version_id", "chunk_id",
}  # fmt: skip
INSTANTS = {"created_at", "intent_recorded_at", "finalized_at"}
MAPS = {"ineligible_counts_by_reason", "effective_serving_status_counts"}
FLAGS = {"reranked", "requested"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Document:
    """A record's document and the values its row indexes."""

    id: uuid.UUID
    ref: str
    created_at: int  # microseconds since the epoch
    retrieval_status: str | None
    audit_write_status: str
    actor_user_id: uuid.UUID | None
    session_id: uuid.UUID | None
    kb_ids: tuple[uuid.UUID, ...]
    body: str

    @property
    def chosen_ref(self) -> str | None:
        """The ref when the writer chose it; None when it is the one derived from the id."""
        return None if self.ref == "r" + self.id.hex else self.ref


def micros(instant: datetime) -> int:
    return (instant - EPOCH) // timedelta(microseconds=1)


def instant_text(instant: datetime) -> str:
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def document(
    stored: dict[str, Any], scopes: list[dict[str, Any]], refs: list[dict[str, Any]]
) -> Document:
    """The document of a record stored one column a field (SQLite's text, integers and JSON
    text, or PostgreSQL's typed values), with its scopes' and refs' rows."""
    fields = _fields(stored, RECORD_FIELDS)
    fields["audit_write_status"] = fields["audit_write_status"] or "finalized"
    fields["scopes"] = [_fields(scope, SCOPE_FIELDS) for scope in scopes]
    fields["refs"] = [_fields(ref, REF_FIELDS) for ref in refs]
    record_id = uuid.UUID(fields["id"])
    created_at = _instant(stored["created_at"])
    kb_ids = {scope["knowledge_base_id"] for scope in fields["scopes"]} - {None}
    return Document(
        id=record_id,
        ref=fields["ref"],
        created_at=micros(created_at),
        retrieval_status=fields["retrieval_status"],
        audit_write_status=fields["audit_write_status"],
        actor_user_id=_uuid(fields["actor_user_id"]),
        session_id=_uuid(fields["session_id"]),
        kb_ids=tuple(sorted(uuid.UUID(kb) for kb in kb_ids)),
        body=rfc8785.dumps(fields).decode(),
    )


def _fields(stored: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: _value(name, stored.get(name)) for name in names}


def _value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in INSTANTS:
        return instant_text(_instant(value))
    if name in UUIDS:
        return str(uuid.UUID(str(value)))
    if name in MAPS and isinstance(value, str | bytes):
        return orjson.loads(value)
    if name in FLAGS:
        return bool(value)
    return value


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _uuid(text: str | None) -> uuid.UUID | None:
    return None if text is None else uuid.UUID(text)
