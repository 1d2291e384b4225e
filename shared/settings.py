"""The one settings class: every environment variable the product reads is declared here.

Only this module reads the environment; everything else receives a `Settings` instance.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERQ_", extra="ignore")

    backend: Literal["sqlite", "azure"] = "sqlite"
    config: Path = Path("config/inferq.toml")
    data_dir: Path = Path("data")
    models_dir: Path = Path("models")

    # HTTP edge
    sync_timeout_s: float = 60.0
    max_body_bytes: int = 8 * 1024 * 1024
    max_inputs: int = 2048
    max_input_chars: int = 100_000
    retry_after_s: int = 1

    # Queue semantics (Azure Storage Queue + Functions host defaults)
    visibility_timeout_s: float = 60.0
    max_dequeue_count: int = 5
    inline_payload_max_bytes: int = 48 * 1024
    job_ttl_s: float = 24 * 3600

    # Runners
    intra_op_threads: int = 1
    max_batch_size: int = 32
    max_batch_wait_ms: float = 5.0
    worker_concurrency: int = 8

    # Local host loops
    poll_interval_s: float = 0.05
    usage_publish_interval_s: float = 5.0
    usage_partitions: int = 4

    # Local host
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HOST", "INFERQ_HOST"))
    port: int = Field(default=7071, validation_alias=AliasChoices("PORT", "INFERQ_PORT"))

    # Demo tenant key for the local host (falls back to a generated one)
    api_key: str | None = None

    # Azure connections; the Functions host's own names, hence no INFERQ_ prefix
    storage_connection: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage", "INFERQ_STORAGE_CONNECTION")
    )
    eventhub_connection: str | None = Field(
        default=None, validation_alias=AliasChoices("EventHubConnection", "INFERQ_EVENTHUB_CONNECTION")
    )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "inferq.sqlite3"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
