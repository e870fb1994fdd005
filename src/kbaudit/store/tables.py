"""The schema, as SQLAlchemy Core tables. Migrations under ``migrations/`` create it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from kbaudit.store.types import Instant, JsonObject, UuidText

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _code(name: str) -> Column[str]:
    return Column(name, String(64))


def _label(name: str) -> Column[str]:
    return Column(name, String(128))


def _digest(name: str) -> Column[str]:
    return Column(name, String(256))


def _count(name: str) -> Column[int]:
    return Column(name, Integer)


organizations = Table(
    "organizations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", UuidText, nullable=False, unique=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", Instant, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("org_id", Integer, ForeignKey("organizations.id"), nullable=False, index=True),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("revoked_at", Instant),
)

# One row per retrieval record: its canonical document (kbaudit.document) beside only what
# queries filter and sort on. Ids are 16 bytes, instants microseconds since the epoch: smaller
# keys make smaller indexes, and index upkeep is what bounds writing. ``seq`` is the order of
# first write: exports use it to leave out records written after their snapshot. ``ref`` is
# kept only when the writer chose it; the default one is derived from the id.
records = Table(
    "records",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("org_id", Integer, ForeignKey("organizations.id"), nullable=False),
    Column("id", LargeBinary(16), nullable=False),
    Column("ref", String(64)),
    Column("created_at", BigInteger, nullable=False),
    Column("retrieval_status", String(16)),
    Column("audit_write_status", String(16), nullable=False),
    Column("actor_user_id", LargeBinary(16)),
    Column("session_id", LargeBinary(16)),
    Column("document", Text, nullable=False),
    # The log leaf of the record's latest write (see log_tiles).
    Column("leaf_index", BigInteger),
    Index("uq_records_org_id", "org_id", "id", unique=True),
    Index(
        "uq_records_org_ref",
        "org_id",
        "ref",
        unique=True,
        sqlite_where=text("ref IS NOT NULL"),
        postgresql_where=text("ref IS NOT NULL"),
    ),
    # Newest-first keyset walks for the window alone and for each equality filter. The time
    # index carries the status too, so that a statuses filter skips records by the index
    # alone instead of reading each one's row (its document) first.
    Index("ix_records_org_time", "org_id", "created_at", "id", "retrieval_status"),
    Index(
        "ix_records_org_actor_time",
        "org_id",
        "actor_user_id",
        "created_at",
        "id",
    ),
    Index(
        "ix_records_org_session_time",
        "org_id",
        "session_id",
        "created_at",
        "id",
    ),
    # Never reuse a seq, even one freed by a purge: snapshots compare against it.
    sqlite_autoincrement=True,
)

# The knowledge bases a record's scopes name: the one filter a column cannot hold. The key
# is the filter's walk (by knowledge base, in time order) and also names the row exactly, so
# that a rewrite or a purge deletes it by the record's document, with no second index.
record_kbs = Table(
    "record_kbs",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("kb_id", LargeBinary(16), primary_key=True),
    Column("created_at", BigInteger, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    sqlite_with_rowid=False,
)

# Statistics of each organization's records by hour and by day (store/stats.py), derived data
# that can always be computed again: one row per span, dimension, status and key, with the
# count and a histogram of durations in DURATION_BINS columns that SQL can sum. A write marks
# its hours stale in stats_stale_hours; the stats route and the upkeep count those again.
DURATION_BINS = 64
stats_hours = Table(
    "stats_hours",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("dimension", String(16), primary_key=True),
    Column("hours", Integer, primary_key=True),  # the span: 1 (an hour) or 24 (a UTC day)
    Column("hour", BigInteger, primary_key=True),  # its first, in hours since the epoch
    Column("status", String(16), primary_key=True),  # '' for a record without one
    Column("key", String(64), primary_key=True),  # '' for a record without one
    Column("count", BigInteger, nullable=False),
    *(Column(f"d{index:02d}", BigInteger, nullable=False) for index in range(DURATION_BINS)),
    sqlite_with_rowid=False,
)
# ``version`` grows with every write to the hour: a computation that began before a write
# leaves the hour stale.
stats_stale_hours = Table(
    "stats_stale_hours",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("version", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# One value a master keyring version derives, kept the first time the version is used: a host
# started with other keys is refused instead of writing what no other host can open.
keyring_checks = Table(
    "keyring_checks",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("check_value", LargeBinary(32), nullable=False),
)

# Each organization's Merkle log (kbaudit.crypto.merkle) in tiles of up to 256 hashes of one
# tree level (store/log.py). A leaf's index is its place in the log; the tree only ever grows,
# and a purge leaves it as it is.
log_tiles = Table(
    "log_tiles",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("level", Integer, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hashes", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

# The leaf data of writes a later write of the same record replaced (a record row holds only
# its latest); a purge deletes them with the record.
superseded_leaves = Table(
    "superseded_leaves",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("record_id", LargeBinary(16), primary_key=True),
    Column("leaf_index", BigInteger, primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

# Append-only: who read or took what, when, from where, and how it ended.
access_log = Table(
    "access_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("route", String(200), nullable=False),
    Column("edge", String(16)),
    Column("details", JsonObject),
    Column("result_count", Integer),
    Column("outcome", String(32), nullable=False),
    Column("client_address", String(64)),
    Column("at", Instant, nullable=False),
    Index("ix_access_log_org_at", "org_id", "at"),
)

# The spool files (store/sqlite/access_spool.py) whose entries are in access_log: a file is moved
# once, even when its mover died before deleting it.
access_spools = Table(
    "access_spools",
    metadata,
    Column("name", String(64), primary_key=True),
)

# One row per export request. The rows are the truth about a job; the queue only carries ids.
export_jobs = Table(
    "export_jobs",
    metadata,
    Column("id", UuidText, primary_key=True),
    Column("org_id", Integer, ForeignKey("organizations.id"), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("export_format", String(8), nullable=False),
    Column("window_start", Instant, nullable=False),
    Column("window_end", Instant, nullable=False),
    Column("filters", JsonObject, nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("started_at", Instant),
    Column("finalized_at", Instant),
    Column("expires_at", Instant),
    Column("snapshot_seq", BigInteger),
    Column("log_size", BigInteger),  # the organization's log at the snapshot
    Column("manifest", LargeBinary),  # manifest.json, once the job has ended with files
    Column("manifest_signature", LargeBinary),  # manifest.json.sig
    Column("rows_per_file", Integer, nullable=False),
    Column("total_rows", BigInteger),
    Column("partial_count", BigInteger),
    Column("failed_count", BigInteger),
    Column("error_code", String(64)),
    Column("idempotency_key", String(255)),
    Column("request_hash", String(64), nullable=False),
    Column("kek_version", Integer, nullable=False),
    Column("wrapped_keyset", LargeBinary),
    # age recipients (a JSON list): every file is delivered encrypted to them.
    Column("recipients", JsonObject),
    Column("destination", String(64)),  # a destination's name: the files are copied there
    Column("files_deleted_at", Instant),  # once expired, when its files were deleted
    Index("ix_export_jobs_org_created", "org_id", "created_at", "id"),
    Index("uq_export_jobs_org_idempotency", "org_id", "idempotency_key", unique=True),
    Index("ix_export_jobs_status", "status"),
)

# One row per planned file. A part covers the records from its lower key (inclusive) to the
# next part's lower key (exclusive); a lease says which worker holds it and until when.
export_parts = Table(
    "export_parts",
    metadata,
    Column("job_id", UuidText, ForeignKey("export_jobs.id"), primary_key=True),
    Column("part_no", Integer, primary_key=True),
    Column("lo_created_at", Instant),
    Column("lo_id", UuidText),
    Column("hi_created_at", Instant),
    Column("hi_id", UuidText),
    Column("planned_rows", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_expires_at", Instant),
    Column("file_name", String(64), nullable=False),
    Column("blob_key", String(255)),
    Column("rows_written", BigInteger),
    Column("partial_rows", BigInteger),
    Column("plaintext_bytes", BigInteger),
    Column("ciphertext_bytes", BigInteger),
    Column("sha256_plaintext", String(64)),
    # What a recipient receives, when it is not the plaintext (an age file).
    Column("delivered_bytes", BigInteger),
    Column("sha256_delivered", String(64)),
    Column("error", String(500)),
    Column("updated_at", Instant, nullable=False),
    Index("ix_export_parts_status_lease", "status", "lease_expires_at"),
)

# One row per organization, made with the defaults the first time it is read.
retention_policies = Table(
    "retention_policies",
    metadata,
    Column("id", UuidText, primary_key=True),
    Column("org_id", Integer, ForeignKey("organizations.id"), nullable=False, unique=True),
    Column("retention_days", Integer, nullable=False),
    Column("legal_hold_enabled", Boolean, nullable=False),
    Column("legal_hold_reason", String(500)),
    Column("legal_hold_set_by", UuidText),
    Column("legal_hold_set_at", Instant),
    Column("archive_before_delete", Boolean, nullable=False),
    Column("archive_destination", String(255)),
    Column("policy_version", Integer, nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
)

# Archives written before a purge: what they hold and how to open them.
archives = Table(
    "archives",
    metadata,
    Column("id", UuidText, primary_key=True),
    Column("org_id", Integer, ForeignKey("organizations.id"), nullable=False, index=True),
    Column("destination", String(255), nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("record_count", BigInteger, nullable=False),
    Column("kek_version", Integer, nullable=False),
    Column("wrapped_keyset", LargeBinary, nullable=False),
    Column("files", JsonObject, nullable=False),
)

# Where an organization's export events are sent. The signing secret is kept only wrapped by
# the organization's key.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", UuidText, primary_key=True),
    Column("org_id", Integer, nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("events", JsonObject, nullable=False),
    Column("description", String(500)),
    Column("kek_version", Integer, nullable=False),
    Column("wrapped_secret", LargeBinary, nullable=False),
    Column("created_at", Instant, nullable=False),
)

# The customer's own buckets, by name; the secret key is kept only wrapped.
destinations = Table(
    "destinations",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("bucket", String(255), nullable=False),
    Column("prefix", String(512), nullable=False),
    Column("region", String(64)),
    Column("endpoint", String(2048)),
    Column("access_key_id", String(256), nullable=False),
    Column("kek_version", Integer, nullable=False),
    Column("wrapped_secret", LargeBinary, nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
)

# Everything kbaudit sends out, written in the transaction that decided it must be sent, and
# worked until it is delivered or given up: a webhook event (target: the webhook's id) or the
# copy of an export's files to a destination (target: its name). ``next_attempt_at`` is also
# the lease of a claimed row: a worker that dies leaves it due again.
outbox = Table(
    "outbox",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("target", String(64), nullable=False),
    Column("export_id", UuidText, nullable=False, index=True),
    Column("event_type", String(32), nullable=False),
    Column("body", LargeBinary),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Instant),
    Column("last_status_code", Integer),
    Column("last_error", String(500)),
    Column("created_at", Instant, nullable=False),
    Column("ended_at", Instant),
    Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_outbox_target_created_at", "target", "created_at"),
)
