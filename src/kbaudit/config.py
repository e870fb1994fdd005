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
    # Empty is refused, not read as unset: every host would then make a keyring of its own.
    master_key: SecretStr | None = Field(None, min_length=1)

    blob_url: str | None = None
    s3_endpoint: str | None = None
    queue_url: str | None = None
    queue_name: str = Field("kbaudit", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    export_rows_per_file: int = Field(100_000, ge=1)
    export_ttl_hours: int = Field(168, ge=1)
    export_max_active_per_org: int = Field(1, ge=1)
    export_lease_seconds: int = Field(60, ge=1)
    export_part_attempts: int = Field(3, ge=1)
    export_retry_backoff_seconds: float = Field(1.0, ge=0)
    download_token_ttl_seconds: int = Field(900, ge=1)
    worker_threads: int = Field(2, ge=1)
    sweep_interval_seconds: float = Field(30.0, gt=0)
    # How often each worker host looks for webhook events and destination copies to send.
    delivery_interval_seconds: float = Field(0.5, gt=0)
    # Lets webhooks and destinations use http and private addresses: development and tests.
    webhook_allow_private: bool = False

    max_batch_records: int = Field(1000, ge=1, le=10_000)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    header_timeout_seconds: float = Field(10.0, gt=0)
    body_timeout_seconds: float = Field(30.0, gt=0)
    # Addresses of the proxies in front of kbaudit (comma-separated); only from these is
    # X-Forwarded-For believed. None by default: any client could otherwise name its own
    # address in the access log and the sign-in throttle.
    trusted_proxies: str = Field("", pattern=r"^[0-9A-Fa-f.:/, ]*$")
    log_level: str = "info"

    @property
    def api_runs_workers(self) -> bool:
        """Only the embedded queue (SQLite in the data folder) has its consumers in the API."""
        return self.queue_url is None

    @property
    def scaled_out(self) -> bool:
        """Whether any part of the state lives off this host, so that every host must share
        the master key rather than each make its own."""
        return bool(
            (self.database_url and not self.database_url.startswith("sqlite"))
            or (self.blob_url and self.blob_url.startswith("s3://"))
            or (self.queue_url and self.queue_url.startswith("redis"))
        )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'kbaudit.db').resolve()}"
