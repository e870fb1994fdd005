"""Applying Alembic migrations, safely when several processes start at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from kbaudit.store.engine import adapter_for

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, lock_dir: Path | None) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    with adapter_for(engine).migration_turn(engine, lock_dir):
        command.upgrade(alembic_config(engine), "head")
