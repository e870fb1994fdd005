"""The one place the database engine is chosen: by the URL's scheme, once, for an engine
and the adapter that knows it (``store/sqlite/``, ``store/postgres/``)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from kbaudit.store.adapter import EngineAdapter
from kbaudit.store.postgres.adapter import PostgresAdapter
from kbaudit.store.sqlite.adapter import SqliteAdapter

ADAPTERS: dict[str, type[EngineAdapter]] = {"sqlite": SqliteAdapter, "postgresql": PostgresAdapter}


def create_store_engine(url: str) -> Engine:
    backend = make_url(url).get_backend_name()
    if backend not in ADAPTERS:
        raise ValueError(f"unsupported database URL scheme: {make_url(url).drivername}")
    return ADAPTERS[backend]().create_engine(url)


def adapter_for(engine: Engine) -> EngineAdapter:
    return ADAPTERS[engine.dialect.name]()
