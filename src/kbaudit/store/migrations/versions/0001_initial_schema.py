"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import kbaudit.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("details", kbaudit.store.types.JsonObject(), nullable=True),
        sa.Column("result_count", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("at", kbaudit.store.types.Instant(length=27), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_log")),
    )
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.create_index("ix_access_log_org_at", ["org_id", "at"], unique=False)

    op.create_table(
        "organizations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", kbaudit.store.types.UuidText(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", kbaudit.store.types.Instant(length=27), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("name", name=op.f("uq_organizations_name")),
        sa.UniqueConstraint("uuid", name=op.f("uq_organizations_uuid")),
    )
    op.create_table(
        "retrieval_refs",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("record_id", kbaudit.store.types.UuidText(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("knowledge_base_id", kbaudit.store.types.UuidText(length=36), nullable=True),
        sa.Column("document_id", kbaudit.store.types.UuidText(length=36), nullable=True),
        sa.Column("document_version_id", kbaudit.store.types.UuidText(length=36), nullable=True),
        sa.Column("chunk_id", kbaudit.store.types.UuidText(length=36), nullable=True),
        sa.Column("chunk_index", sa.Integer(), nullable=True),
        sa.Column("chunk_stable_id", sa.String(length=128), nullable=True),
        sa.Column("chunk_content_hash", sa.String(length=256), nullable=True),
        sa.Column("chunk_content_hash_key_version", sa.String(length=64), nullable=True),
        sa.Column("document_version_content_hash", sa.String(length=256), nullable=True),
        sa.Column("citation_ref", sa.String(length=128), nullable=True),
        sa.Column("source_uri_hash", sa.String(length=256), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
    )
    with op.batch_alter_table("retrieval_refs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_retrieval_refs_record", ["org_id", "record_id", "position"], unique=True
        )

    op.create_table(
        "retrieval_scopes",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("record_id", kbaudit.store.types.UuidText(length=36), nullable=False),
        sa.Column("created_at", kbaudit.store.types.Instant(length=27), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("knowledge_base_id", kbaudit.store.types.UuidText(length=36), nullable=True),
        sa.Column("requested", sa.Boolean(), nullable=True),
        sa.Column("eligible_version_count", sa.Integer(), nullable=True),
        sa.Column("result_count", sa.Integer(), nullable=True),
        sa.Column("serving_decision", sa.String(length=64), nullable=True),
        sa.Column("scan_policy_decision", sa.String(length=64), nullable=True),
        sa.Column(
            "effective_serving_status_counts", kbaudit.store.types.JsonObject(), nullable=True
        ),
    )
    with op.batch_alter_table("retrieval_scopes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_retrieval_scopes_kb_time",
            ["org_id", "knowledge_base_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_retrieval_scopes_record", ["org_id", "record_id", "position"], unique=True
        )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("created_at", kbaudit.store.types.Instant(length=27), nullable=False),
        sa.Column("revoked_at", kbaudit.store.types.Instant(length=27), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_api_keys_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_org_id"), ["org_id"], unique=False)

    op.create_table(
        "retrieval_records",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("id", kbaudit.store.types.UuidText(length=36), nullable=False),
        sa.Column("created_at", kbaudit.store.types.Instant(length=27), nullable=False),
        sa.Column("retrieval_status", sa.String(length=64), nullable=True),
        sa.Column("serving_decision", sa.String(length=64), nullable=True),
        sa.Column("audit_write_status", sa.String(length=64), nullable=True),
        sa.Column("requested_kb_count", sa.Integer(), nullable=True),
        sa.Column("result_count", sa.Integer(), nullable=True),
        sa.Column("response_ref_count", sa.Integer(), nullable=True),
        sa.Column("eligible_version_count", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("actor_user_id", kbaudit.store.types.UuidText(length=36), nullable=True),
        sa.Column("session_id", kbaudit.store.types.UuidText(length=36), nullable=True),
        sa.Column("agent_id", kbaudit.store.types.UuidText(length=36), nullable=True),
        sa.Column("rag_query_id", kbaudit.store.types.UuidText(length=36), nullable=True),
        sa.Column("query_hash", sa.String(length=256), nullable=True),
        sa.Column("query_hash_key_version", sa.String(length=64), nullable=True),
        sa.Column("query_length_bucket", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("trace_id", sa.String(length=128), nullable=True),
        sa.Column("caller", sa.String(length=128), nullable=True),
        sa.Column("initiator_type", sa.String(length=64), nullable=True),
        sa.Column("principal_type", sa.String(length=64), nullable=True),
        sa.Column("permission", sa.String(length=128), nullable=True),
        sa.Column("permission_decision", sa.String(length=64), nullable=True),
        sa.Column("query_hash_scope", sa.String(length=64), nullable=True),
        sa.Column("query_length", sa.Integer(), nullable=True),
        sa.Column("eligible_version_digest", sa.String(length=256), nullable=True),
        sa.Column("ineligible_counts_by_reason", kbaudit.store.types.JsonObject(), nullable=True),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        sa.Column("eligibility_rule_version", sa.String(length=64), nullable=True),
        sa.Column("scan_policy_version", sa.String(length=64), nullable=True),
        sa.Column("scan_policy_decision", sa.String(length=64), nullable=True),
        sa.Column("retrieval_config_version", sa.String(length=64), nullable=True),
        sa.Column("embedding_model", sa.String(length=128), nullable=True),
        sa.Column("reranker_model", sa.String(length=128), nullable=True),
        sa.Column("top_k", sa.Integer(), nullable=True),
        sa.Column("effective_limit", sa.Integer(), nullable=True),
        sa.Column("ranking_mode", sa.String(length=64), nullable=True),
        sa.Column("alpha", sa.Float(), nullable=True),
        sa.Column("reranked", sa.Boolean(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_category", sa.String(length=64), nullable=True),
        sa.Column("intent_recorded_at", kbaudit.store.types.Instant(length=27), nullable=True),
        sa.Column("finalized_at", kbaudit.store.types.Instant(length=27), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_retrieval_records_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_retrieval_records")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("retrieval_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_retrieval_records_org_actor_time",
            ["org_id", "actor_user_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_retrieval_records_org_session_time",
            ["org_id", "session_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_retrieval_records_org_time", ["org_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("uq_retrieval_records_org_id", ["org_id", "id"], unique=True)
        batch_op.create_index("uq_retrieval_records_org_ref", ["org_id", "ref"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("retrieval_records", schema=None) as batch_op:
        batch_op.drop_index("uq_retrieval_records_org_ref")
        batch_op.drop_index("uq_retrieval_records_org_id")
        batch_op.drop_index("ix_retrieval_records_org_time")
        batch_op.drop_index("ix_retrieval_records_org_session_time")
        batch_op.drop_index("ix_retrieval_records_org_actor_time")

    op.drop_table("retrieval_records")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_org_id"))

    op.drop_table("api_keys")
    with op.batch_alter_table("retrieval_scopes", schema=None) as batch_op:
        batch_op.drop_index("ix_retrieval_scopes_record")
        batch_op.drop_index("ix_retrieval_scopes_kb_time")

    op.drop_table("retrieval_scopes")
    with op.batch_alter_table("retrieval_refs", schema=None) as batch_op:
        batch_op.drop_index("ix_retrieval_refs_record")

    op.drop_table("retrieval_refs")
    op.drop_table("organizations")
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.drop_index("ix_access_log_org_at")

    op.drop_table("access_log")
