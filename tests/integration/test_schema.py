"""The migrations build the schema the code reads: every table of ``store/tables.py`` has
exactly its columns after ``migrate``, on either engine."""

from __future__ import annotations

from sqlalchemy import inspect

from kbaudit.container import Container
from kbaudit.store.tables import metadata


def test_the_migrated_database_has_every_column_of_the_tables(container: Container) -> None:
    inspector = inspect(container.store.engine)
    for table in metadata.sorted_tables:
        migrated = {column["name"] for column in inspector.get_columns(table.name)}
        assert migrated == set(table.columns.keys()), table.name
