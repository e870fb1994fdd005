"""the edge each access-log entry came in by

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

An entry's route is now the one its edge took (``GET /console/records/{ref}`` for a record
opened in the console, where it used to be logged under the API's route), and ``edge`` says
which: api, console or cli. Entries from before have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("access_log", sa.Column("edge", sa.String(length=16)))


def downgrade() -> None:
    op.drop_column("access_log", "edge")
