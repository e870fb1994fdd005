"""the access log's spool files already moved into it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

On SQLite, access-log entries are appended to a file of each process's own and moved into
``access_log`` in batches (store/sqlite/access_spool.py). The move of a file records its name in
the same transaction, so that a file left behind by a mover that died before deleting it is
not moved twice. PostgreSQL commits entries directly and leaves the table empty.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_spools",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_access_spools")),
    )


def downgrade() -> None:
    op.drop_table("access_spools")
