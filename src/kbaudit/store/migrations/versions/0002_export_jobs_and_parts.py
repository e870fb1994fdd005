"""export jobs and parts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kbaudit.store.migrations.frozen import types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("id", types.uuid_text(36), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("export_format", sa.String(length=8), nullable=False),
        sa.Column("window_start", types.instant(27), nullable=False),
        sa.Column("window_end", types.instant(27), nullable=False),
        sa.Column("filters", types.json_object(), nullable=False),
        sa.Column("created_at", types.instant(27), nullable=False),
        sa.Column("started_at", types.instant(27), nullable=True),
        sa.Column("finalized_at", types.instant(27), nullable=True),
        sa.Column("expires_at", types.instant(27), nullable=True),
        sa.Column("snapshot_seq", sa.BigInteger(), nullable=True),
        sa.Column("rows_per_file", sa.Integer(), nullable=False),
        sa.Column("total_rows", sa.BigInteger(), nullable=True),
        sa.Column("partial_count", sa.BigInteger(), nullable=True),
        sa.Column("failed_count", sa.BigInteger(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_keyset", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_export_jobs_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_jobs")),
    )
    with op.batch_alter_table("export_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_export_jobs_org_created", ["org_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_export_jobs_status", ["status"], unique=False)
        batch_op.create_index(
            "uq_export_jobs_org_idempotency", ["org_id", "idempotency_key"], unique=True
        )

    op.create_table(
        "export_parts",
        sa.Column("job_id", types.uuid_text(36), nullable=False),
        sa.Column("part_no", sa.Integer(), nullable=False),
        sa.Column("lo_created_at", types.instant(27), nullable=True),
        sa.Column("lo_id", types.uuid_text(36), nullable=True),
        sa.Column("hi_created_at", types.instant(27), nullable=True),
        sa.Column("hi_id", types.uuid_text(36), nullable=True),
        sa.Column("planned_rows", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", types.instant(27), nullable=True),
        sa.Column("file_name", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=255), nullable=True),
        sa.Column("rows_written", sa.BigInteger(), nullable=True),
        sa.Column("partial_rows", sa.BigInteger(), nullable=True),
        sa.Column("plaintext_bytes", sa.BigInteger(), nullable=True),
        sa.Column("ciphertext_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256_plaintext", sa.String(length=64), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("updated_at", types.instant(27), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["export_jobs.id"], name=op.f("fk_export_parts_job_id_export_jobs")
        ),
        sa.PrimaryKeyConstraint("job_id", "part_no", name=op.f("pk_export_parts")),
    )
    with op.batch_alter_table("export_parts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_export_parts_status_lease", ["status", "lease_expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("export_parts", schema=None) as batch_op:
        batch_op.drop_index("ix_export_parts_status_lease")

    op.drop_table("export_parts")
    with op.batch_alter_table("export_jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_export_jobs_org_idempotency")
        batch_op.drop_index("ix_export_jobs_status")
        batch_op.drop_index("ix_export_jobs_org_created")

    op.drop_table("export_jobs")
