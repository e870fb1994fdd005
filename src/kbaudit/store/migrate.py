"""Applying Alembic migrations, safely when several processes start at once."""

from __future__ import annotations

import fcntl
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, lock_dir: Path) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "migrate.lock", "w") as lock:
        # SQLite lives on this host, so a host-wide file lock serializes the migrators.
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(alembic_config(engine), "head")
