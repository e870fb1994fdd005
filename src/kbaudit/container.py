"""The one composition root: ``serve``, ``worker``, the CLI and the tests all build here."""

from __future__ import annotations

from dataclasses import dataclass, field

from kbaudit.config import Settings
from kbaudit.crypto.master_key import MasterKey, load_master_key
from kbaudit.metrics import Metrics
from kbaudit.services.clock import Clock, system_clock
from kbaudit.services.query import CursorCodec
from kbaudit.store.engine import create_store_engine
from kbaudit.store.migrate import migrate
from kbaudit.store.unit_of_work import Store


@dataclass
class Container:
    settings: Settings
    store: Store
    master_key: MasterKey
    cursor_codec: CursorCodec
    clock: Clock
    metrics: Metrics = field(default_factory=Metrics)

    def close(self) -> None:
        self.store.engine.dispose()


def build_container(
    settings: Settings, *, clock: Clock = system_clock, apply_migrations: bool = True
) -> Container:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    master_key = load_master_key(
        settings.data_dir,
        settings.master_key.get_secret_value() if settings.master_key else None,
    )
    engine = create_store_engine(settings.resolved_database_url)
    if apply_migrations:
        migrate(engine, settings.data_dir)
    return Container(
        settings=settings,
        store=Store(engine),
        master_key=master_key,
        cursor_codec=CursorCodec(master_key.derive("cursor/v1")),
        clock=clock,
    )
