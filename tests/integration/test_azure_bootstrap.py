"""Bootstrap and settings for INFERQ_BACKEND=azure: the adapters it builds, identity-based connections, the
embedded usage stream when no Event Hubs connection is set, and an embedded path that never loads the SDKs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from azure.identity import DefaultAzureCredential

from shared.adapters.azure.blobs import AzureBlobStore
from shared.adapters.azure.connection import AzureStorage, StorageConnection
from shared.adapters.azure.jobs import AzureJobStore
from shared.adapters.azure.ledger import AzureUsageLedger
from shared.adapters.azure.queue import AzureJobQueue
from shared.adapters.azure.stats import AzureDeploymentStats
from shared.adapters.azure.usage_stream import AzureUsageStream
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.bindings import JOB_QUEUE, POISON_QUEUE
from shared.bootstrap import bootstrap
from shared.domain.errors import ConfigError
from shared.settings import Settings
from tests.azurite import Azurite
from tests.conftest import ROOT


def azure_settings(tmp_path: Path, config_path: Path, **env: str) -> Settings:
    return Settings(_env_file=None, backend="azure", data_dir=tmp_path / "data", config=config_path, **env)


def test_the_azure_backend_builds_every_azure_adapter_and_keeps_usage_embedded_without_event_hubs(
    tmp_path: Path, config_path: Path, azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    settings = azure_settings(tmp_path, config_path, AzureWebJobsStorage=azurite.fresh_connection_string())
    with caplog.at_level(logging.WARNING, logger="shared.bootstrap"):
        service = bootstrap(settings)
    assert isinstance(service.queue, AzureJobQueue) and service.queue.name == JOB_QUEUE
    assert isinstance(service.store, AzureJobStore) and isinstance(service.blobs, AzureBlobStore)
    assert isinstance(service.ledger, AzureUsageLedger) and isinstance(service.stats, AzureDeploymentStats)
    assert isinstance(service.stream, SqliteUsageLog)
    assert "no Event Hubs connection" in caplog.text
    poison = service.poison
    assert isinstance(poison, AzureJobQueue) and poison.name == POISON_QUEUE
    assert poison.count() == 0  # created on first use (Azurite starts empty)


def test_with_an_event_hubs_connection_the_stream_is_the_producer_built_on_first_publish(
    tmp_path: Path, config_path: Path, azurite: Azurite
) -> None:
    settings = azure_settings(
        tmp_path, config_path, AzureWebJobsStorage=azurite.fresh_connection_string(),
        EventHubConnection="Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true",
    )  # fmt: skip
    service = bootstrap(settings)
    assert isinstance(service.stream, AzureUsageStream) and service.stream._producer is None


def test_the_azure_backend_without_a_storage_account_fails_at_start_with_what_to_set(
    tmp_path: Path, config_path: Path
) -> None:
    with pytest.raises(ConfigError, match="AzureWebJobsStorage"):
        bootstrap(azure_settings(tmp_path, config_path))


def test_an_inline_payload_limit_too_large_for_a_queue_message_fails_at_start(
    tmp_path: Path, config_path: Path, azurite: Azurite
) -> None:
    settings = azure_settings(tmp_path, config_path, AzureWebJobsStorage=azurite.connection_string())
    with pytest.raises(ConfigError, match="64 KiB"):
        bootstrap(settings.model_copy(update={"inline_payload_max_bytes": 48 * 1024}))


def test_identity_based_connections_read_the_functions_host_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
        "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net",
        "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
        "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
        "EventHubConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
        "INFERQ_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.eventhub_namespace == "ns.servicebus.windows.net"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    connection = StorageConnection.from_settings(settings)
    assert connection == StorageConnection(
        queue_uri="https://acct.queue.core.windows.net",
        blob_uri="https://acct.blob.core.windows.net",
        table_uri="https://acct.table.core.windows.net",
        client_id="11111111-2222-3333-4444-555555555555",
    )
    storage = AzureStorage(connection)
    assert storage.queues.url.startswith("https://acct.queue.core.windows.net")  # built, not connected
    assert isinstance(storage.queues.credential, DefaultAzureCredential)
    assert storage.queue(JOB_QUEUE).queue_name == JOB_QUEUE

    monkeypatch.delenv("AzureWebJobsStorage__queueServiceUri")
    monkeypatch.delenv("AzureWebJobsStorage__blobServiceUri")
    monkeypatch.delenv("AzureWebJobsStorage__tableServiceUri")
    monkeypatch.setenv("AzureWebJobsStorage__accountName", "other")
    by_name = StorageConnection.from_settings(Settings(_env_file=None))
    assert by_name.table_uri == "https://other.table.core.windows.net"


def test_use_development_storage_means_azurite_on_its_default_ports() -> None:
    settings = Settings(_env_file=None, AzureWebJobsStorage="UseDevelopmentStorage=true")
    connection = StorageConnection.from_settings(settings)
    assert connection.connection_string is not None
    assert "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1" in connection.connection_string
    assert connection.account_key() is not None and connection.account_key()[0] == "devstoreaccount1"  # type: ignore[index]


def test_the_embedded_backend_never_imports_the_azure_sdks(tmp_path: Path, config_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from shared.bootstrap import bootstrap\n"
        "from shared.settings import Settings\n"
        f"data, config = Path({str(tmp_path / 'data')!r}), Path({str(config_path)!r})\n"
        "bootstrap(Settings(_env_file=None, data_dir=data, config=config))\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('azure.storage', 'azure.data', 'azure.eventhub',"
        " 'azure.identity', 'boto3', 'shared.adapters.azure')))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
