"""the tamper-evident log (tiles, replaced writes), manifests of exports, keyring checks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Every organization's log starts with its records as they are now, one leaf each, in the
order they were first written (seq).
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

from kbaudit.store.migrations.frozen.log import NewLog, leaf_data, leaf_hash

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 2000


def upgrade() -> None:
    op.add_column("records", sa.Column("leaf_index", sa.BigInteger()))
    op.create_table(
        "log_tiles",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "level", "idx", name=op.f("pk_log_tiles")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "superseded_leaves",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.LargeBinary(16), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id", "record_id", "leaf_index", name=op.f("pk_superseded_leaves")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "keyring_checks",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("check_value", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_keyring_checks")),
    )
    op.add_column("export_jobs", sa.Column("log_size", sa.BigInteger()))
    op.add_column("export_jobs", sa.Column("manifest", sa.LargeBinary()))
    op.add_column("export_jobs", sa.Column("manifest_signature", sa.LargeBinary()))
    _log_records_as_they_are(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("kbaudit does not downgrade its schema")


def _log_records_as_they_are(bind: sa.Connection) -> None:
    postgres = bind.dialect.name == "postgresql"
    if postgres:  # SQLite walks seq (its rowid) already
        op.execute("CREATE INDEX tmp_records_org_seq ON records (org_id, seq)")
    for org_id, org_uuid in bind.execute(sa.text("SELECT id, uuid FROM organizations")):
        _log_organization(bind, org_id, str(org_uuid))
    if postgres:
        op.execute("DROP INDEX tmp_records_org_seq")


def _log_organization(bind: sa.Connection, org_id: int, org_uuid: str) -> None:
    read = sa.text(
        "SELECT seq, id, audit_write_status, document FROM records "
        "WHERE org_id = :org AND seq > :after ORDER BY seq LIMIT :n"
    )
    number = sa.text("UPDATE records SET leaf_index = :leaf WHERE org_id = :org AND seq = :seq")
    log, size, after = NewLog(bind, org_id), 0, 0
    while rows := bind.execute(read, {"org": org_id, "after": after, "n": BATCH}).all():
        log.append(
            [
                leaf_hash(leaf_data(org_uuid, _uuid(row.id), row.audit_write_status, row.document))
                for row in rows
            ]
        )
        bind.execute(
            number,
            [{"org": org_id, "seq": row.seq, "leaf": size + n} for n, row in enumerate(rows)],
        )
        size += len(rows)
        after = rows[-1].seq
    log.finish()


def _uuid(raw: bytes) -> str:
    return str(uuid.UUID(bytes=bytes(raw)))
