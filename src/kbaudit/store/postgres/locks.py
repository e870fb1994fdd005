"""kbaudit's advisory locks on PostgreSQL, in place of SQLite's single writer."""

from __future__ import annotations

from sqlalchemy import Connection

from kbaudit.domain import OrgId
from kbaudit.store.stats import StaleHour

# The numbers only have to differ from each other's and from any other application's on the
# same database.
MIGRATION_LOCK = 7_241_000
PARTITION_LOCK = 7_241_001
# Writers hold this lock shared for their whole transaction; taking it exclusively therefore
# waits until every seq handed out so far is committed or rolled back (see newest_seq).
SNAPSHOT_LOCK = 7_241_002
UPKEEP_LOCK = 7_241_003
WRITER_LOCKS = 7_241_004  # with the organization's id as the second key
STATS_HOUR_LOCKS = 7_241_005  # with hour_lock_key as the second key


def hour_lock_key(hour: StaleHour) -> int:
    """An organization's hour folded into the lock's 32-bit second key. Two hours that fold
    alike only make one counter skip an hour the other is not counting: it stays stale, and
    is counted at the next turn."""
    folded = (hour.org_id * 1_000_003 + hour.hour) % 2**32
    return folded - 2**32 if folded >= 2**31 else folded


def lock_for_write(connection: Connection, org_id: OrgId) -> None:
    """Writers of one organization take turns, as SQLite's single writer does: a partitioned
    table cannot keep ids and refs unique without created_at, so the check-then-write of the
    ingest rules must not interleave. One lock per organization, rather than one per id,
    keeps the server's shared lock table small however large the batches."""
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock_shared(%s)", (SNAPSHOT_LOCK,))
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, %s)", (WRITER_LOCKS, org_id))


def newest_seq(connection: Connection) -> int:
    """The highest seq any writer has been handed, once every such writer has finished:
    records committed later always get a higher one."""
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (SNAPSHOT_LOCK,))
    row = connection.exec_driver_sql(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM records_seq_seq"
    ).one()
    return int(row[0])
