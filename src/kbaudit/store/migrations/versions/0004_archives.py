"""archives

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kbaudit.store.migrations.frozen import types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archives",
        sa.Column("id", types.uuid_text(36), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=255), nullable=False),
        sa.Column("created_at", types.instant(27), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_keyset", sa.LargeBinary(), nullable=False),
        sa.Column("files", types.json_object(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_archives_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archives")),
    )
    with op.batch_alter_table("archives", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_archives_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("archives", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_archives_org_id"))

    op.drop_table("archives")
