"""The schema, as SQLAlchemy Core tables. Migrations under ``migrations/`` create it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

from kbaudit.store.types import Instant, JsonObject, UuidText

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _code(name: str) -> Column[str]:
    return Column(name, String(64))


def _label(name: str) -> Column[str]:
    return Column(name, String(128))


def _digest(name: str) -> Column[str]:
    return Column(name, String(256))


def _count(name: str) -> Column[int]:
    return Column(name, Integer)


organizations = Table(
    "organizations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", UuidText, nullable=False, unique=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", Instant, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("org_id", Integer, ForeignKey("organizations.id"), nullable=False, index=True),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("revoked_at", Instant),
)

# One row per retrieval attempt. ``seq`` is the order of first write: exports use it to leave
# out records written after their snapshot. Column order follows the contract's detail view.
retrieval_records = Table(
    "retrieval_records",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("org_id", Integer, ForeignKey("organizations.id"), nullable=False),
    Column("ref", String(64), nullable=False),
    Column("id", UuidText, nullable=False),
    Column("created_at", Instant, nullable=False),
    _code("retrieval_status"),
    _code("serving_decision"),
    _code("audit_write_status"),
    _count("requested_kb_count"),
    _count("result_count"),
    _count("response_ref_count"),
    _count("eligible_version_count"),
    _count("duration_ms"),
    Column("actor_user_id", UuidText),
    Column("session_id", UuidText),
    Column("agent_id", UuidText),
    Column("rag_query_id", UuidText),
    _digest("query_hash"),
    _code("query_hash_key_version"),
    _code("query_length_bucket"),
    _label("request_id"),
    _label("trace_id"),
    _label("caller"),
    _code("initiator_type"),
    _code("principal_type"),
    _label("permission"),
    _code("permission_decision"),
    _code("query_hash_scope"),
    _count("query_length"),
    _digest("eligible_version_digest"),
    Column("ineligible_counts_by_reason", JsonObject),
    _code("policy_version"),
    _code("eligibility_rule_version"),
    _code("scan_policy_version"),
    _code("scan_policy_decision"),
    _code("retrieval_config_version"),
    _label("embedding_model"),
    _label("reranker_model"),
    _count("top_k"),
    _count("effective_limit"),
    _code("ranking_mode"),
    Column("alpha", Float),
    Column("reranked", Boolean),
    _code("error_code"),
    _code("error_category"),
    Column("intent_recorded_at", Instant),
    Column("finalized_at", Instant),
    Index("uq_retrieval_records_org_id", "org_id", "id", unique=True),
    Index("uq_retrieval_records_org_ref", "org_id", "ref", unique=True),
    # Newest-first keyset walks for the window alone and for each equality filter.
    Index("ix_retrieval_records_org_time", "org_id", "created_at", "id"),
    Index("ix_retrieval_records_org_actor_time", "org_id", "actor_user_id", "created_at", "id"),
    Index("ix_retrieval_records_org_session_time", "org_id", "session_id", "created_at", "id"),
    # Never reuse a seq, even one freed by a purge: snapshots compare against it.
    sqlite_autoincrement=True,
)

# Children carry the parent's created_at so that a knowledge-base filter can walk its own
# time-ordered index instead of scanning the parent's.
retrieval_scopes = Table(
    "retrieval_scopes",
    metadata,
    Column("org_id", Integer, nullable=False),
    Column("record_id", UuidText, nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("position", Integer, nullable=False),
    Column("knowledge_base_id", UuidText),
    Column("requested", Boolean),
    _count("eligible_version_count"),
    _count("result_count"),
    _code("serving_decision"),
    _code("scan_policy_decision"),
    Column("effective_serving_status_counts", JsonObject),
    Index("ix_retrieval_scopes_record", "org_id", "record_id", "position", unique=True),
    Index("ix_retrieval_scopes_kb_time", "org_id", "knowledge_base_id", "created_at"),
)

retrieval_refs = Table(
    "retrieval_refs",
    metadata,
    Column("org_id", Integer, nullable=False),
    Column("record_id", UuidText, nullable=False),
    # Filled on every write; nullable only for rows SQLite held before it was added.
    Column("created_at", Instant),
    Column("position", Integer, nullable=False),
    Column("knowledge_base_id", UuidText),
    Column("document_id", UuidText),
    Column("document_version_id", UuidText),
    Column("chunk_id", UuidText),
    _count("chunk_index"),
    _label("chunk_stable_id"),
    _digest("chunk_content_hash"),
    _code("chunk_content_hash_key_version"),
    _digest("document_version_content_hash"),
    _label("citation_ref"),
    _digest("source_uri_hash"),
    _count("rank"),
    Column("score", Float),
    Index("ix_retrieval_refs_record", "org_id", "record_id", "position", unique=True),
)

# Append-only: who read or took what, when, from where, and how it ended.
access_log = Table(
    "access_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("route", String(200), nullable=False),
    Column("details", JsonObject),
    Column("result_count", Integer),
    Column("outcome", String(32), nullable=False),
    Column("client_address", String(64)),
    Column("at", Instant, nullable=False),
    Index("ix_access_log_org_at", "org_id", "at"),
)

# One row per export request. The rows are the truth about a job; the queue only carries ids.
export_jobs = Table(
    "export_jobs",
    metadata,
    Column("id", UuidText, primary_key=True),
    Column("org_id", Integer, ForeignKey("organizations.id"), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("export_format", String(8), nullable=False),
    Column("window_start", Instant, nullable=False),
    Column("window_end", Instant, nullable=False),
    Column("filters", JsonObject, nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("started_at", Instant),
    Column("finalized_at", Instant),
    Column("expires_at", Instant),
    Column("snapshot_seq", BigInteger),
    Column("rows_per_file", Integer, nullable=False),
    Column("total_rows", BigInteger),
    Column("partial_count", BigInteger),
    Column("failed_count", BigInteger),
    Column("error_code", String(64)),
    Column("idempotency_key", String(255)),
    Column("request_hash", String(64), nullable=False),
    Column("kek_version", Integer, nullable=False),
    Column("wrapped_keyset", LargeBinary),
    Index("ix_export_jobs_org_created", "org_id", "created_at", "id"),
    Index("uq_export_jobs_org_idempotency", "org_id", "idempotency_key", unique=True),
    Index("ix_export_jobs_status", "status"),
)

# One row per planned file. A part covers the records from its lower key (inclusive) to the
# next part's lower key (exclusive); a lease says which worker holds it and until when.
export_parts = Table(
    "export_parts",
    metadata,
    Column("job_id", UuidText, ForeignKey("export_jobs.id"), primary_key=True),
    Column("part_no", Integer, primary_key=True),
    Column("lo_created_at", Instant),
    Column("lo_id", UuidText),
    Column("hi_created_at", Instant),
    Column("hi_id", UuidText),
    Column("planned_rows", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_expires_at", Instant),
    Column("file_name", String(64), nullable=False),
    Column("blob_key", String(255)),
    Column("rows_written", BigInteger),
    Column("partial_rows", BigInteger),
    Column("plaintext_bytes", BigInteger),
    Column("ciphertext_bytes", BigInteger),
    Column("sha256_plaintext", String(64)),
    Column("error", String(500)),
    Column("updated_at", Instant, nullable=False),
    Index("ix_export_parts_status_lease", "status", "lease_expires_at"),
)

# One row per organization, made with the defaults the first time it is read.
retention_policies = Table(
    "retention_policies",
    metadata,
    Column("id", UuidText, primary_key=True),
    Column("org_id", Integer, ForeignKey("organizations.id"), nullable=False, unique=True),
    Column("retention_days", Integer, nullable=False),
    Column("legal_hold_enabled", Boolean, nullable=False),
    Column("legal_hold_reason", String(500)),
    Column("legal_hold_set_by", UuidText),
    Column("legal_hold_set_at", Instant),
    Column("archive_before_delete", Boolean, nullable=False),
    Column("archive_destination", String(255)),
    Column("policy_version", Integer, nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
)

# Archives written before a purge: what they hold and how to open them.
archives = Table(
    "archives",
    metadata,
    Column("id", UuidText, primary_key=True),
    Column("org_id", Integer, ForeignKey("organizations.id"), nullable=False, index=True),
    Column("destination", String(255), nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("record_count", BigInteger, nullable=False),
    Column("kek_version", Integer, nullable=False),
    Column("wrapped_keyset", LargeBinary, nullable=False),
    Column("files", JsonObject, nullable=False),
)
