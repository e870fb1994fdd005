"""Applying Alembic migrations, safely when several processes start at once."""

from __future__ import annotations

import fcntl
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from kbaudit.store.postgres import MIGRATION_LOCK

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, lock_dir: Path | None) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    if engine.dialect.name == "postgresql":
        # Every host can start at once: the server serializes them on a session lock.
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            connection.commit()
            try:
                command.upgrade(alembic_config(engine), "head")
            finally:
                connection.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
                connection.commit()
        return
    assert lock_dir is not None, "SQLite migrations lock a file in the data folder"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "migrate.lock", "w") as lock:
        # SQLite lives on this host, so a host-wide file lock serializes the migrators.
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(alembic_config(engine), "head")
