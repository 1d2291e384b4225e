"""The one settings class: every environment variable the product reads is declared here.

Only this module reads the environment; everything else receives a `Settings` instance.
"""

from __future__ import annotations

import os
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
    # Image inputs (POST /images/embeddings), each checked from its header before any pixel is decoded: its bytes
    # (after base64), its width and height, and its pixels (width × height; a decompression bomb's header says so).
    image_max_bytes: int = Field(default=6 * 1024 * 1024, gt=0)
    image_max_side: int = Field(default=8192, gt=0)
    # At least 1024 × 1024: Pillow's bomb check (set to this, process-wide) also guards its crops and resizes.
    image_max_pixels: int = Field(default=16_777_216, ge=1_048_576)  # 4096 × 4096
    # The OpenAPI schema and its Swagger UI (/openapi.json, /docs): "key" serves them to any API key, "off" answers
    # 404. Unset: "key" on the embedded backend, "off" on Azure (a deployment publishes no schema unless told to).
    docs: Literal["off", "key"] | None = None

    # Credentials. The running process re-reads the config file's keys and token issuers when the file changed,
    # checked at most every `config_reload_s` (a cheap stat). Tokens: `auth_leeway_s` of clock skew is allowed on
    # exp/nbf; an issuer's key set is cached `jwks_cache_s` and re-read for an unknown kid at most every
    # `jwks_refresh_min_s`, waiting at most `jwks_timeout_s`.
    config_reload_s: float = Field(default=5.0, ge=0)
    auth_leeway_s: float = Field(default=60.0, ge=0)
    jwks_cache_s: float = Field(default=3600.0, gt=0)
    jwks_refresh_min_s: float = Field(default=60.0, ge=0)
    jwks_timeout_s: float = Field(default=5.0, gt=0)

    # Queue semantics (Azure Storage Queue + Functions host defaults)
    visibility_timeout_s: float = 60.0
    max_dequeue_count: int = 5
    # Claim-check threshold. 47 KiB, not 48: base64 (host.json messageEncoding) turns 48 KiB into the whole
    # 64 KiB a Storage Queue message may hold, leaving no room for the envelope around the payload.
    inline_payload_max_bytes: int = 47 * 1024
    job_ttl_s: float = 24 * 3600
    # A job's message kept unsent this long (its process died between storing the job and queueing it) is sent
    # by a timer: every minute on Azure, every half of this on the local host. Longer than a send may take.
    resend_unsent_after_s: float = Field(default=60.0, gt=0)

    # Routing: traffic splits and mirroring draw from a random generator; a seed makes them reproducible
    routing_seed: int | None = None

    # Runtimes. ONNX Runtime's intra-op threads default to the machine's cores. Embeddings run `batch_workers`
    # batches at once on one session, sharing its threads: while one run's Python forms its inputs or hands out its
    # results under the interpreter lock, the other computes (at 16 clients the host served 3-6% more than with
    # one batch at a time, and a lone request as fast: `make bench --host-env INFERQ_BATCH_WORKERS=1`). A
    # batch is what waits while the engine is busy (plus `max_batch_wait_ms`, 0: none), at most `max_batch_size`
    # inputs and `max_batch_tokens` tokens, shared round-robin between tenants; a worker runs up to
    # `worker_concurrency` jobs at once.
    intra_op_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    max_batch_size: int = 32
    max_batch_tokens: int = Field(default=512, ge=1)
    max_batch_wait_ms: float = Field(default=0.0, ge=0)
    batch_workers: int = Field(default=2, ge=1)  # batches run at once
    worker_concurrency: int = Field(default=32, ge=1)
    # Fair sharing between tenants: a worker instance runs `tenant_max_running` jobs of one tenant at once, more
    # only while as many of its `worker_concurrency` slots stay free for other tenants; a message past that goes
    # back on the queue, invisible for `tenant_defer_s`. (On Azure an instance runs host.json's batchSize +
    # newBatchThreshold = 24 jobs: the Bicep sets INFERQ_WORKER_CONCURRENCY to match.)
    tenant_max_running: int = Field(default=8, ge=1)
    tenant_defer_s: float = Field(default=1.0, ge=0)
    # Scoring scripts run in a process of their own: a run() past its timeout fails its job and the process is
    # restarted; init() (loading the model) may take up to its own.
    script_run_timeout_s: float = Field(default=60.0, gt=0)
    script_init_timeout_s: float = Field(default=600.0, gt=0)

    # Billing. A tenant's month-to-date cost is re-read from the ledger at most every `budget_cache_s` when
    # admitting against its monthly budget (what this process reserved and settled meanwhile counts too).
    budget_cache_s: float = Field(default=10.0, ge=0)
    # How long a finished job's usage may take to reach the ledger: its cost counts against the budget here until
    # a ledger figure read that long after it ended.
    budget_ingest_lag_s: float = Field(default=30.0, ge=0)
    # How long a budget reservation holds at most: a job not settled by then (its instance died, or it is still
    # queued or running) no longer counts until its usage is billed. At most an hour: the holds stay one entity.
    budget_hold_s: float = Field(default=900.0, gt=0, le=3600)
    usage_ingest_attempts: int = Field(default=3, ge=1)  # ledger tries per batch before it is kept for replay
    usage_ingest_backoff_s: float = Field(default=0.2, ge=0)  # × the attempt number, between tries

    # Job outcomes for /deployments are written in batches, at most this long after a job ends (0: at once).
    stats_flush_s: float = Field(default=1.0, ge=0)

    # Local host loops: an idle queue is polled ever less often, up to `max_poll_interval_s` (host.json's
    # `maxPollingInterval`); a job sent in this process wakes the pump at once.
    poll_interval_s: float = 0.05
    max_poll_interval_s: float = Field(default=2.0, gt=0)
    usage_publish_interval_s: float = 5.0
    usage_partitions: int = 4

    # Local host
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HOST", "INFERQ_HOST"))
    port: int = Field(default=7071, validation_alias=AliasChoices("PORT", "INFERQ_PORT"))
    # The deployments whose models the local host loads at start: `*` every one; else names, comma-separated; empty:
    # none. The others load on their first job, as on Azure, where an instance holds only the models it ran.
    preload: str = "*"

    # With a config that has a demo tenant (the local host's example): the demo tenant's key and an admin key
    # (each falls back to a generated one, printed at start)
    api_key: str | None = None
    admin_key: str | None = None

    # Azure connections; the Functions host's own names, hence no INFERQ_ prefix
    storage_connection: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage", "INFERQ_STORAGE_CONNECTION")
    )
    eventhub_connection: str | None = Field(
        default=None, validation_alias=AliasChoices("EventHubConnection", "INFERQ_EVENTHUB_CONNECTION")
    )
    # Identity-based connections (what the Bicep template sets): service URIs or an account name, and a
    # DefaultAzureCredential with the user-assigned identity's client id.
    storage_queue_service_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage__queueServiceUri")
    )
    storage_blob_service_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage__blobServiceUri")
    )
    storage_table_service_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage__tableServiceUri")
    )
    storage_account_name: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage__accountName")
    )
    storage_client_id: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID")
    )
    eventhub_namespace: str | None = Field(
        default=None, validation_alias=AliasChoices("EventHubConnection__fullyQualifiedNamespace")
    )
    eventhub_client_id: str | None = Field(
        default=None, validation_alias=AliasChoices("EventHubConnection__clientId", "AZURE_CLIENT_ID")
    )
    eventhub_retry_total: int = Field(default=2, ge=0)  # bounded: a failed publish is kept on the job (Invariant 7)
    eventhub_send_timeout_s: float = Field(default=10.0, gt=0)

    # The Azure SDKs log every HTTP request and response at INFO: off unless asked for (INFO, DEBUG).
    azure_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    # Observability (README, Observability): the exporters' standard names, hence no INFERQ_ prefix. The
    # OpenTelemetry SDK reads the other OTEL_* variables itself (headers, sampler, batch delay, export interval).
    applicationinsights_connection_string: str | None = Field(
        default=None, validation_alias=AliasChoices("APPLICATIONINSIGHTS_CONNECTION_STRING")
    )
    otlp_endpoint: str | None = Field(default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT"))
    otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf", validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_PROTOCOL")
    )
    otel_service_name: str | None = Field(default=None, validation_alias=AliasChoices("OTEL_SERVICE_NAME"))
    otel_sdk_disabled: bool = Field(default=False, validation_alias=AliasChoices("OTEL_SDK_DISABLED"))

    # Model sources: `s3://` (and S3-compatible stores at this endpoint); AWS credentials as boto3 finds them
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    @property
    def docs_served(self) -> bool:
        return (self.docs or ("off" if self.backend == "azure" else "key")) == "key"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "inferq.sqlite3"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
