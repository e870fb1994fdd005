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

    max_batch_records: int = Field(1000, ge=1, le=10_000)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    log_level: str = "info"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'kbaudit.db').resolve()}"
