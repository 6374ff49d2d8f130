"""The one typed settings object, read from the environment (prefix EXCHANGE_) and CLI options."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="journal, snapshots and the embedded database")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the store; default: SQLite file in the data directory")
    snapshot_every_commands: int = Field(default=100_000, ge=0)
    audit_every_commands: int = Field(default=10_000, ge=0)

    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'exchange.db').resolve()}"
