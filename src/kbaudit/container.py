"""The one composition root: ``serve``, ``worker``, the CLI and the tests all build here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import structlog
from huey import Huey
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from kbaudit.blobs import BlobStore
from kbaudit.blobs.local import LocalBlobStore
from kbaudit.blobs.s3 import S3BlobStore
from kbaudit.config import Settings
from kbaudit.crypto.envelope import LocalKeyManager
from kbaudit.crypto.keyring import KEYRING_FILE, Keyring, load_keyring
from kbaudit.crypto.signing import SigningKeys
from kbaudit.errors import ConfigurationError
from kbaudit.metrics import Metrics
from kbaudit.services.archive import Archiver
from kbaudit.services.clock import Clock, system_clock
from kbaudit.services.delivery.deps import DeliveryConfig, DeliveryDeps
from kbaudit.services.delivery.events import follow_export
from kbaudit.services.delivery.outbox import Outbox
from kbaudit.services.exports.deps import ExportConfig, ExportDeps
from kbaudit.services.exports.sweep import sweep
from kbaudit.services.exports.tokens import DownloadTokens
from kbaudit.services.keys import Authenticator, check_keyring
from kbaudit.services.query import CursorCodec
from kbaudit.services.retention import purge
from kbaudit.services.stats import refresh_stale_stats
from kbaudit.store.engine import create_store_engine
from kbaudit.store.migrate import migrate
from kbaudit.store.unit_of_work import Store
from kbaudit.workers.consumer import Workers
from kbaudit.workers.queue import ExportTasks, build_huey

log = structlog.get_logger("kbaudit")


@dataclass
class Container:
    settings: Settings
    store: Store
    keyring: Keyring
    cursor_codec: CursorCodec
    authenticate: Authenticator
    clock: Clock
    huey: Huey
    exports: ExportDeps
    delivery: DeliveryDeps
    archiver: Archiver
    metrics: Metrics = field(default_factory=Metrics)

    def workers(self, threads: int | None = None) -> Workers:
        """Export workers over this container, with the periodic upkeep and deliveries."""
        outbox = Outbox(self.delivery)
        return Workers(
            self.huey,
            threads or self.settings.worker_threads,
            self._upkeep,
            self.settings.sweep_interval_seconds,
            outbox.send_due,
            self.settings.delivery_interval_seconds,
            after_delivering=outbox.close,
        )

    def _upkeep(self) -> None:
        # Every worker host runs it; the store lets one at a time through, so that two hosts
        # never archive the same records twice.
        with self.store.upkeep_turn() as mine:
            if mine:
                sweep(self.exports)
                purge(self.store, self.clock, self.archiver)
                refresh_stale_stats(self.store)

    def close(self) -> None:
        self.store.close()


def _refuse_data_without_its_key(settings: Settings) -> None:
    """A database in the data folder and no master key for it: making a new key would start
    a keyring nothing in the database was written with, beside the data it cannot open."""
    database = settings.data_dir / "kbaudit.db"
    keys = settings.data_dir / KEYRING_FILE
    if settings.master_key is None and database.exists() and not keys.exists():
        raise ConfigurationError(
            f"{database} is there but {keys} is not: kbaudit will not make a new master key "
            "beside data written under another. Restore master.keys (or set "
            "KBAUDIT_MASTER_KEY), or move the data folder away to start afresh"
        )


def build_container(
    settings: Settings, *, clock: Clock = system_clock, apply_migrations: bool = True
) -> Container:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = _database_url(settings)
    if settings.scaled_out and settings.master_key is None:
        raise ConfigurationError(
            "KBAUDIT_MASTER_KEY must be set when the database, blob store or queue is shared: "
            "every host has to hold the same master keys (see docs/operations.md)"
        )
    _refuse_data_without_its_key(settings)
    try:
        keyring = load_keyring(
            settings.data_dir,
            settings.master_key.get_secret_value() if settings.master_key else None,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    engine = create_store_engine(settings.resolved_database_url)
    try:
        engine.connect().close()
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConfigurationError(f"the database at {database} cannot be reached: {reason}") from exc
    if apply_migrations:
        migrate(engine, settings.data_dir)
    store = Store(engine)
    check_keyring(store, keyring)
    huey = build_huey(settings.queue_url, settings.data_dir, settings.queue_name)
    blobs, keys = build_blob_store(settings), LocalKeyManager(keyring)
    tasks = ExportTasks(huey)
    tasks.deps = ExportDeps(
        store=store,
        blobs=blobs,
        keys=keys,
        signing=SigningKeys(keyring),
        tokens=DownloadTokens(keyring, settings.download_token_ttl_seconds, clock),
        dispatcher=tasks,
        clock=clock,
        config=ExportConfig(
            rows_per_file=settings.export_rows_per_file,
            ttl_hours=settings.export_ttl_hours,
            max_active_per_org=settings.export_max_active_per_org,
            lease_seconds=settings.export_lease_seconds,
            part_attempts=settings.export_part_attempts,
            retry_backoff_seconds=settings.export_retry_backoff_seconds,
        ),
        followers=[follow_export],
    )
    metrics = Metrics()
    return Container(
        settings=settings,
        store=store,
        keyring=keyring,
        authenticate=Authenticator(
            store, on_refusal=lambda outcome: metrics.refused_keys.labels(outcome).inc()
        ),
        # The oldest version: rotating the keyring must not break a client's paging.
        cursor_codec=CursorCodec(keyring.derive("cursor/v1", keyring.versions[0])),
        clock=clock,
        huey=huey,
        exports=tasks.deps,
        delivery=DeliveryDeps(
            store, blobs, keys, clock, DeliveryConfig(allow_private=settings.webhook_allow_private)
        ),
        archiver=Archiver(blobs, keys, clock),
        metrics=metrics,
    )


def _database_url(settings: Settings) -> str:
    """The database URL, checked before anything else depends on it; shown without its
    password."""
    try:
        url = make_url(settings.resolved_database_url)
    except ArgumentError as exc:
        raise ConfigurationError(
            f"KBAUDIT_DATABASE_URL: {settings.database_url!r} is not a database URL "
            "(sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
        ) from exc
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"KBAUDIT_DATABASE_URL: {url.drivername!r} databases are not supported "
            "(sqlite or postgresql)"
        )
    return url.render_as_string(hide_password=True)


def build_blob_store(settings: Settings) -> BlobStore:
    url = settings.blob_url
    if url is None:
        return LocalBlobStore(settings.data_dir / "blobs")
    if url.startswith("file://"):
        return LocalBlobStore(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        store = S3BlobStore(url, settings.s3_endpoint)
        if problem := store.ensure_bucket():
            log.warning("blob_store_unready", problem=problem)
        return store
    raise ConfigurationError(f"KBAUDIT_BLOB_URL: unsupported blob store {url!r}")
