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

from kbaudit.store.migrations.frozen import types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("export_jobs", sa.Column("files_deleted_at", types.instant()))


def downgrade() -> None:
    op.drop_column("export_jobs", "files_deleted_at")
