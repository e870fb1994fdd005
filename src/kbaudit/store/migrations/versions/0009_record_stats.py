"""record statistics: counts and duration histograms by hour and day, and the stale hours

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Every hour that already holds records starts stale: the upkeep and the stats route compute
them from the records, so the numbers of an upgraded database are those of a fresh one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DURATION_BINS = 64  # as kbaudit.store.tables.DURATION_BINS when this revision was written
HOUR_MICROS = 3_600_000_000


def upgrade() -> None:
    op.create_table(
        "stats_hours",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("dimension", sa.String(16), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        *(sa.Column(f"d{i:02d}", sa.BigInteger(), nullable=False) for i in range(DURATION_BINS)),
        sa.PrimaryKeyConstraint(
            "org_id", "dimension", "hours", "hour", "status", "key", name=op.f("pk_stats_hours")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "stats_stale_hours",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "hour", name=op.f("pk_stats_stale_hours")),
        sqlite_with_rowid=False,
    )
    op.execute(
        sa.text(
            "INSERT INTO stats_stale_hours (org_id, hour, version) "
            "SELECT DISTINCT org_id, created_at / :hour, 1 FROM records"
        ).bindparams(hour=HOUR_MICROS)
    )


def downgrade() -> None:
    op.drop_table("stats_stale_hours")
    op.drop_table("stats_hours")
