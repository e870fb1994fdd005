"""Each engine gets its own adapter, once, and the adapter answers for the engine."""

from __future__ import annotations

from pathlib import Path
from threading import Semaphore

from sqlalchemy import create_engine

from kbaudit.store.adapters import PostgresAdapter, SqliteAdapter, adapter_for
from kbaudit.store.engine import create_store_engine
from kbaudit.store.sqlite import WriterLock


def test_a_sqlite_file_gets_the_sqlite_adapter_and_its_file(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'kbaudit.db'}")
    adapter = adapter_for(engine)
    assert isinstance(adapter, SqliteAdapter)
    assert adapter.database_file(engine) == tmp_path / "kbaudit.db"
    gate = adapter.writer_gate(adapter.database_file(engine))
    assert isinstance(gate, WriterLock)
    gate.close()
    engine.dispose()


def test_an_in_memory_sqlite_database_has_no_file() -> None:
    engine = create_engine("sqlite://")
    assert adapter_for(engine).database_file(engine) is None


def test_postgresql_gets_its_adapter_without_a_file() -> None:
    # Building the engine does not connect: nothing listens on this port.
    engine = create_store_engine("postgresql://kbaudit:secret@127.0.0.1:9/kbaudit")
    adapter = adapter_for(engine)
    assert isinstance(adapter, PostgresAdapter)
    assert adapter.database_file(engine) is None
    assert isinstance(adapter.writer_gate(None), Semaphore)
    assert adapter.monthly_partitions
    assert not SqliteAdapter.monthly_partitions


def test_sqlite_purges_in_smaller_batches_than_postgresql() -> None:
    """SQLite's one writer waits out every batch; PostgreSQL's writers do not."""
    assert SqliteAdapter.purge_batch_size < PostgresAdapter.purge_batch_size
