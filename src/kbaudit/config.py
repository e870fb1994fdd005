"""Settings, read once from the environment (``KBAUDIT_*``) and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob kbaudit has. Library code receives this object; it never reads os.environ."""

    model_config = SettingsConfigDict(env_prefix="KBAUDIT_", extra="ignore", frozen=True)

    data_dir: Path = Path("./kbaudit-data")
    database_url: str | None = None
    master_key: SecretStr | None = None

    blob_url: str | None = None
    queue_url: str | None = None

    export_rows_per_file: int = Field(100_000, ge=1)
    export_ttl_hours: int = Field(168, ge=1)
    export_max_active_per_org: int = Field(1, ge=1)
    export_lease_seconds: int = Field(60, ge=1)
    export_part_attempts: int = Field(3, ge=1)
    export_retry_backoff_seconds: float = Field(1.0, ge=0)
    download_token_ttl_seconds: int = Field(900, ge=1)
    worker_threads: int = Field(2, ge=1)
    sweep_interval_seconds: float = Field(30.0, gt=0)

    max_batch_records: int = Field(1000, ge=1, le=10_000)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    log_level: str = "info"

    @property
    def blob_root(self) -> Path:
        if self.blob_url is None:
            return self.data_dir / "blobs"
        if self.blob_url.startswith("file://"):
            return Path(self.blob_url.removeprefix("file://"))
        raise ValueError(f"KBAUDIT_BLOB_URL: unsupported blob store {self.blob_url!r}")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'kbaudit.db').resolve()}"
