"""when an expired export's files were deleted

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

The sweep marks a job expired (its data key destroyed) before it deletes the job's files,
so that no token is minted for a file that is going away; the files are then deleted, and
this column says they are. Jobs that expired before it get their prefix deleted once more,
which finds it empty.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# An instant as the store keeps one: fixed-width UTC text on SQLite, timestamptz on PostgreSQL.
INSTANT = sa.String(27).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")


def upgrade() -> None:
    op.add_column("export_jobs", sa.Column("files_deleted_at", INSTANT))


def downgrade() -> None:
    op.drop_column("export_jobs", "files_deleted_at")
