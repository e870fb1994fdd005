"""refs carry their record's created_at

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

PostgreSQL partitions refs by created_at and has the column from 0001; SQLite gets it here,
filled in from the records.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kbaudit.store.migrations.frozen import types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    with op.batch_alter_table("retrieval_refs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_at", types.instant(27), nullable=True))
    op.execute(
        "UPDATE retrieval_refs SET created_at = (SELECT r.created_at FROM retrieval_records r "
        "WHERE r.org_id = retrieval_refs.org_id AND r.id = retrieval_refs.record_id)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    with op.batch_alter_table("retrieval_refs", schema=None) as batch_op:
        batch_op.drop_column("created_at")
