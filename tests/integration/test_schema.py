"""The migrations build the schema the code reads: every table of ``store/tables.py`` has
exactly its columns after ``migrate``, on either engine."""

from __future__ import annotations

import msgspec
from sqlalchemy import inspect, select

from kbaudit.container import Container
from kbaudit.document import document_of
from kbaudit.domain import SCOPES, OrgId, RecordIn
from kbaudit.services.ingest import ingest_records
from kbaudit.services.keys import create_key
from kbaudit.store.tables import metadata, records
from tests.helpers import record


def test_the_migrated_database_has_every_column_of_the_tables(container: Container) -> None:
    inspector = inspect(container.store.engine)
    for table in metadata.sorted_tables:
        migrated = {column["name"] for column in inspector.get_columns(table.name)}
        assert migrated == set(table.columns.keys()), table.name


def test_documents_are_stored_as_the_schema_says(container: Container) -> None:
    """PostgreSQL compresses documents with LZ4 (migration 0010), in partitions made after
    the migration too; SQLite keeps them as they are. Either way they read back whole."""
    create_key(container.store, container.clock, "acme", SCOPES)
    written = msgspec.convert(record(created_at="2026-03-01T00:00:00Z"), RecordIn)
    ingest_records(container.store, container.clock, OrgId(1), [written])
    with container.store.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            method = connection.exec_driver_sql(
                "SELECT attcompression FROM pg_attribute "
                "WHERE attrelid = 'records_p2026_03'::regclass AND attname = 'document'"
            ).scalar_one()
            assert method == "l"
        stored = connection.execute(select(records.c.document)).scalar_one()
    assert stored == document_of(written).body
