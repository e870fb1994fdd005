"""PostgreSQL's monthly partitions of the record tables: made ahead by the upkeep (or by the
first write into a month it did not foresee), dropped whole when retention has passed them by.

Making or dropping a partition locks the whole ``records`` table: it waits for every query
on it to end (an export's scan may take minutes), and every query that comes after, of any
organization, queues behind it. So such DDL waits at most ``DDL_LOCK_TIMEOUT`` for its lock
and then gives up: the writer gets a 503 to retry, the purge tries the month next turn (its
batches delete the records meanwhile). In the soak run, without it, writes stalled for up to
34 s while a retired organization's month was dropped and made again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, text

from kbaudit.document import micros
from kbaudit.store.models import Month
from kbaudit.store.postgres.locks import PARTITION_LOCK

RECORD_TABLES = ("records", "record_kbs")
# Under PostgreSQL's deadlock_timeout (1 s): a drop holds the month's partitions while it waits
# for the parent, the reverse of a query's order, and the soak run saw queries chosen as the
# deadlock's victim (503s) with 2 s. Giving up first, the DDL is always the one that yields.
DDL_LOCK_TIMEOUT = "500ms"


def ensure_partitions(connection: Connection, instants: Iterable[datetime]) -> list[Month]:
    """Make the monthly partitions these instants fall in, where missing; returns the months
    made."""
    return make_months(connection, {Month.of(instant) for instant in instants})


def make_months(connection: Connection, months: Iterable[Month]) -> list[Month]:
    """Make these months' partitions, where missing; returns the months made. The lock makes
    two writers that need the same new month take turns; the check keeps the common case
    (every month exists) to one round trip without it."""
    missing = _missing(connection, sorted(set(months)))
    if not missing:
        return []
    with waiting_at_most(connection, DDL_LOCK_TIMEOUT):
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK})
        made = _missing(connection, missing)
        for month in made:
            for base in RECORD_TABLES:
                connection.exec_driver_sql(
                    f"CREATE TABLE {month.table(base)} PARTITION OF {base} "
                    f"FOR VALUES FROM ({micros(month.start)}) TO ({micros(month.end)})"
                )
    return made


@contextmanager
def waiting_at_most(connection: Connection, timeout: str) -> Iterator[None]:
    """Within the block, a statement that waits longer than ``timeout`` for a lock fails;
    the rest of the transaction keeps the timeout it had."""
    before = connection.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
    connection.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": timeout})
    yield
    connection.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": before})


def analyze_partitions(connection: Connection, months: Iterable[Month]) -> None:
    """Give new partitions their first statistics, from the rows their first write put in.

    With none, PostgreSQL takes any one organization for 0.5% of a partition's rows, so
    looking up a batch's 5,000 ids by ``org_id = ... AND id = ANY(...)`` read every row of
    the organization instead of walking the unique index: 60 ms a batch at 100,000 records,
    growing with the table, until autovacuum came by. Statistics taken once hold from then
    on, since the planner scales them with the partition's size."""
    for month in months:
        for base in RECORD_TABLES:
            connection.exec_driver_sql(f"ANALYZE {month.table(base)}")


def analyze_once_written(connection: Connection, month: Month) -> None:
    """A month made ahead, empty, gets its first statistics once records are in it (see
    ``analyze_partitions``), unless autovacuum has given it some already."""
    query = text(
        "SELECT last_analyze IS NULL AND last_autoanalyze IS NULL FROM pg_stat_user_tables "
        "WHERE relname = :name"
    )
    table = month.table("records")
    unseen = connection.execute(query, {"name": table}).scalar_one_or_none()
    written = f"SELECT EXISTS (SELECT 1 FROM {table})"  # noqa: S608
    if unseen and connection.exec_driver_sql(written).scalar_one():
        analyze_partitions(connection, [month])


def _missing(connection: Connection, months: list[Month]) -> list[Month]:
    if not months:
        return []
    names = [month.table("records") for month in months]
    query = text(
        "SELECT name FROM unnest(CAST(:names AS text[])) AS name WHERE to_regclass(name) IS NULL"
    )
    absent = {row.name for row in connection.execute(query, {"names": names})}
    return [month for month in months if month.table("records") in absent]


def months_present(connection: Connection) -> list[Month]:
    query = text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'records'::regclass"
    )
    months = []
    for (name,) in connection.execute(query):
        year, month = name.removeprefix("records_p").split("_")
        months.append(Month(int(year), int(month)))
    return sorted(months)


def organizations_in(connection: Connection, month: Month) -> list[int]:
    """The organizations with records in the month: a probe of the time index per
    organization, rather than a scan of the month."""
    table = month.table("records")
    rows = connection.exec_driver_sql(
        f"SELECT o.id FROM organizations o WHERE EXISTS "  # noqa: S608
        f"(SELECT 1 FROM {table} r WHERE r.org_id = o.id)"
    )
    return [row[0] for row in rows]


def hold_month(connection: Connection, month: Month) -> int:
    """Count the month's records, then hold its partitions until the transaction ends: no
    record comes into them between the look at who has records there and the drop. The
    count comes first, so that no query queued behind the hold waits for a scan."""
    table = month.table("records")
    count = connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()  # noqa: S608
    with waiting_at_most(connection, DDL_LOCK_TIMEOUT):
        for base in RECORD_TABLES:
            connection.exec_driver_sql(f"LOCK TABLE {month.table(base)} IN ACCESS EXCLUSIVE MODE")
    return int(count)


def drop_month(connection: Connection, month: Month) -> None:
    with waiting_at_most(connection, DDL_LOCK_TIMEOUT):
        for base in RECORD_TABLES:
            connection.exec_driver_sql(f"DROP TABLE {month.table(base)}")
