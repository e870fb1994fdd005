"""retention policies

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kbaudit.store.migrations.frozen import types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_policies",
        sa.Column("id", types.uuid_text(36), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("legal_hold_enabled", sa.Boolean(), nullable=False),
        sa.Column("legal_hold_reason", sa.String(length=500), nullable=True),
        sa.Column("legal_hold_set_by", types.uuid_text(36), nullable=True),
        sa.Column("legal_hold_set_at", types.instant(27), nullable=True),
        sa.Column("archive_before_delete", sa.Boolean(), nullable=False),
        sa.Column("archive_destination", sa.String(length=255), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("created_at", types.instant(27), nullable=False),
        sa.Column("updated_at", types.instant(27), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_retention_policies_org_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_policies")),
        sa.UniqueConstraint("org_id", name=op.f("uq_retention_policies_org_id")),
    )


def downgrade() -> None:
    op.drop_table("retention_policies")
