"""delivery: webhooks, destinations and their outbox; age recipients and what was delivered

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Existing jobs have no recipients and no destination: their files are delivered as they were.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kbaudit.store.migrations.frozen import types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("export_jobs", sa.Column("recipients", types.json_object()))
    op.add_column("export_jobs", sa.Column("destination", sa.String(64)))
    op.add_column("export_parts", sa.Column("delivered_bytes", sa.BigInteger()))
    op.add_column("export_parts", sa.Column("sha256_delivered", sa.String(64)))
    op.create_table(
        "webhooks",
        sa.Column("id", types.uuid_text(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", types.json_object(), nullable=False),
        sa.Column("description", sa.String(500)),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", types.instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index(op.f("ix_webhooks_org_id"), "webhooks", ["org_id"])
    op.create_table(
        "destinations",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("prefix", sa.String(512), nullable=False),
        sa.Column("region", sa.String(64)),
        sa.Column("endpoint", sa.String(2048)),
        sa.Column("access_key_id", sa.String(256), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", types.instant(), nullable=False),
        sa.Column("updated_at", types.instant(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "name", name=op.f("pk_destinations")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("export_id", types.uuid_text(), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("body", sa.LargeBinary()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", types.instant()),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.String(500)),
        sa.Column("created_at", types.instant(), nullable=False),
        sa.Column("ended_at", types.instant()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(
        op.f("ix_outbox_status_next_attempt_at"), "outbox", ["status", "next_attempt_at"]
    )
    op.create_index(op.f("ix_outbox_target_created_at"), "outbox", ["target", "created_at"])
    op.create_index(op.f("ix_outbox_export_id"), "outbox", ["export_id"])


def downgrade() -> None:
    raise NotImplementedError("kbaudit does not downgrade its schema")
