"""Each engine gets its own adapter, once, and the adapter answers for the engine."""

from __future__ import annotations

from pathlib import Path
from threading import Semaphore

from sqlalchemy import create_engine

from kbaudit.store.access_log import GroupCommit
from kbaudit.store.engine import adapter_for, create_store_engine
from kbaudit.store.postgres.adapter import PostgresAdapter
from kbaudit.store.postgres.retention import PostgresRetention
from kbaudit.store.retention import RetentionRepository
from kbaudit.store.sqlite.access_spool import AccessSpool
from kbaudit.store.sqlite.adapter import SqliteAdapter, database_file
from kbaudit.store.sqlite.writers import WriterLock


def nothing(*_args: object) -> None:
    """Stands in for the store's writers of access-log entries: none is written here."""


def test_a_sqlite_file_gets_the_sqlite_adapter_its_lock_and_its_spool(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'kbaudit.db'}")
    adapter = adapter_for(engine)
    assert isinstance(adapter, SqliteAdapter)
    assert database_file(engine) == tmp_path / "kbaudit.db"
    writes = adapter.write_path(engine, nothing, nothing)
    assert isinstance(writes.gate, WriterLock)
    assert isinstance(writes.access_log, AccessSpool)
    assert writes.after_write(True) is not None  # a bulk write checkpoints itself
    writes.close()
    engine.dispose()


def test_an_in_memory_sqlite_database_has_no_file_to_spool_beside() -> None:
    engine = create_engine("sqlite://")
    writes = adapter_for(engine).write_path(engine, nothing, nothing)
    assert database_file(engine) is None
    assert isinstance(writes.access_log, GroupCommit)
    assert writes.after_write(True) is None
    writes.close()


def test_postgresql_gets_its_adapter_and_months_to_drop_whole() -> None:
    # Building the engine does not connect: nothing listens on this port.
    engine = create_store_engine("postgresql://kbaudit:secret@127.0.0.1:9/kbaudit")
    adapter = adapter_for(engine)
    assert isinstance(adapter, PostgresAdapter)
    writes = adapter.write_path(engine, nothing, nothing)
    assert isinstance(writes.gate, Semaphore)
    assert isinstance(writes.access_log, GroupCommit)
    assert adapter.retention is PostgresRetention
    assert SqliteAdapter.retention is RetentionRepository


def test_sqlite_purges_in_smaller_batches_than_postgresql() -> None:
    """SQLite's one writer waits out every batch; PostgreSQL's writers do not."""
    assert SqliteAdapter.purge_batch_size < PostgresAdapter.purge_batch_size
