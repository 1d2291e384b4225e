"""Model sources against real endpoints: S3 through moto's server (HTTP on a free port), Azure Blob through
Azurite. Each file checked by sha256, cached once per version, a wrong sha256 refused with nothing cached."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from azure.storage.blob import BlobServiceClient
from moto.server import ThreadedMotoServer

from shared.adapters.model_source import ModelSources, version_key
from shared.domain.config import load_config
from shared.domain.errors import ConfigError
from shared.runtimes.registry import RuntimeRegistry
from shared.settings import Settings
from tests.azurite import Azurite, unique
from tests.conftest import MODEL_DIR, free_port, write_config

FILES = {"model.onnx": b"\x08\x01fake onnx bytes" * 1000, "sub/tokenizer.json": b'{"version": "1.0"}'}
SHAS = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = unique("models-")
    s3.create_bucket(Bucket=name)
    for key, data in FILES.items():
        s3.put_object(Bucket=name, Key=f"minilm/v1/{key}", Body=data)
    return name


def s3_settings(tmp_path: Path, endpoint: str) -> Settings:
    return Settings(_env_file=None, models_dir=tmp_path / "models", s3_endpoint_url=endpoint)


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_s3_files_are_verified_and_cached_once_per_version(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    settings = s3_settings(tmp_path, moto_endpoint)
    folder = ModelSources.from_settings(settings).fetch(f"s3://{bucket}/minilm/v1", SHAS)
    assert folder == settings.models_dir / ".cache" / version_key(SHAS)
    assert {name: (folder / name).read_bytes() for name in FILES} == FILES
    for key in FILES:
        s3.delete_object(Bucket=bucket, Key=f"minilm/v1/{key}")
    # A cold worker (a new source object) on the same disk finds the version without downloading it again.
    assert ModelSources.from_settings(settings).fetch(f"s3://{bucket}/minilm/v1/", SHAS) == folder


def test_a_wrong_sha256_is_refused_and_nothing_is_cached(tmp_path: Path, moto_endpoint: str, bucket: str) -> None:
    settings = s3_settings(tmp_path, moto_endpoint)
    wrong = {**SHAS, "model.onnx": "0" * 64}
    with pytest.raises(ConfigError) as refused:
        ModelSources.from_settings(settings).fetch(f"s3://{bucket}/minilm/v1", wrong)
    message = str(refused.value)
    assert "model.onnx" in message and f"sha256 {SHAS['model.onnx']}" in message and "expected " + "0" * 64 in message
    assert "refusing" in message
    assert leftovers(settings.models_dir / ".cache") == []  # no version folder, no half-written download


def test_a_missing_s3_file_is_a_clear_config_error(tmp_path: Path, moto_endpoint: str, bucket: str) -> None:
    settings = s3_settings(tmp_path, moto_endpoint)
    with pytest.raises(ConfigError, match=r"s3://.*/minilm/v2/model.onnx"):
        ModelSources.from_settings(settings).fetch(f"s3://{bucket}/minilm/v2", SHAS)
    assert leftovers(settings.models_dir / ".cache") == []


@pytest.fixture
def blob_source(azurite: Azurite) -> str:
    service = BlobServiceClient.from_connection_string(azurite.connection_string())
    container = service.create_container(unique("models"))
    for key, data in FILES.items():
        container.upload_blob(f"minilm/v1/{key}", data)
    return f"{azurite.blob_url()}/{container.container_name}/minilm/v1"


def blob_settings(tmp_path: Path, azurite: Azurite) -> Settings:
    return Settings(_env_file=None, models_dir=tmp_path / "models", AzureWebJobsStorage=azurite.connection_string())


def test_blob_files_are_verified_and_cached_once_per_version(
    tmp_path: Path, azurite: Azurite, blob_source: str
) -> None:
    settings = blob_settings(tmp_path, azurite)
    folder = ModelSources.from_settings(settings).fetch(blob_source, SHAS)
    assert {name: (folder / name).read_bytes() for name in FILES} == FILES
    container = blob_source.split("/")[4]
    client = BlobServiceClient.from_connection_string(azurite.connection_string()).get_container_client(container)
    for key in FILES:
        client.delete_blob(f"minilm/v1/{key}")
    assert ModelSources.from_settings(settings).fetch(blob_source, SHAS) == folder  # no second download


def test_a_wrong_sha256_from_blob_storage_is_refused(tmp_path: Path, azurite: Azurite, blob_source: str) -> None:
    settings = blob_settings(tmp_path, azurite)
    wrong = {**SHAS, "sub/tokenizer.json": "f" * 64}
    with pytest.raises(ConfigError, match=r"sub/tokenizer.json .* has sha256 .*, expected f{64}: refusing"):
        ModelSources.from_settings(settings).fetch(blob_source, wrong)
    assert leftovers(settings.models_dir / ".cache") == []
    with pytest.raises(ConfigError, match="not found"):
        ModelSources.from_settings(settings).fetch(blob_source.replace("/v1", "/v9"), SHAS)


def test_the_real_model_runs_from_a_blob_source(tmp_path: Path, azurite: Azurite) -> None:
    service = BlobServiceClient.from_connection_string(azurite.connection_string())
    container = service.create_container(unique("models"))
    for name in ("model.onnx", "tokenizer.json"):
        container.upload_blob(f"all-MiniLM-L6-v2-int8/{name}", (MODEL_DIR / name).read_bytes())
    url = f"{azurite.blob_url()}/{container.container_name}/all-MiniLM-L6-v2-int8"
    config_path = write_config(tmp_path / "inferq.toml")
    config_path.write_text(config_path.read_text().replace(f'source = "{MODEL_DIR.as_posix()}"', f'source = "{url}"'))
    config = load_config(config_path)
    assert config.default_deployment.model.source == url
    settings = blob_settings(tmp_path, azurite).model_copy(update={"max_batch_wait_ms": 1})
    registry = RuntimeRegistry(settings, ModelSources.from_settings(settings))
    (embedding,) = registry.runtime(config.default_deployment).predict(["served from blob storage"])
    assert embedding.vector.shape == (384,) and embedding.tokens > 0


def test_a_corrupted_cached_version_is_not_served_but_fetched_again(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    settings = s3_settings(tmp_path, moto_endpoint)
    folder = ModelSources.from_settings(settings).fetch(f"s3://{bucket}/minilm/v1", SHAS)
    (folder / "model.onnx").write_bytes(b"truncated")  # a damaged disk, a tmp cleaner, a half-restored backup
    (folder / "sub" / "tokenizer.json").unlink()
    again = ModelSources.from_settings(settings).fetch(f"s3://{bucket}/minilm/v1", SHAS)
    assert {name: (again / name).read_bytes() for name in FILES} == FILES
    for key in FILES:
        s3.delete_object(Bucket=bucket, Key=f"minilm/v1/{key}")
    (again / "model.onnx").write_bytes(b"truncated")
    with pytest.raises(ConfigError):  # nothing verified to serve: refused, never the damaged file
        ModelSources.from_settings(settings).fetch(f"s3://{bucket}/minilm/v1", SHAS)
    assert leftovers(settings.models_dir / ".cache") == []


def test_a_models_dir_that_cannot_be_written_is_a_clear_config_error(
    tmp_path: Path, moto_endpoint: str, bucket: str
) -> None:
    # On Azure the app package is read-only: the cache must go where INFERQ_MODELS_DIR says, and saying so is
    # a ConfigError (the job fails with the reason) rather than an OSError that poisons every delivery.
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    settings = Settings(_env_file=None, models_dir=blocked / "models", s3_endpoint_url=moto_endpoint)
    with pytest.raises(ConfigError, match="INFERQ_MODELS_DIR"):
        ModelSources.from_settings(settings).fetch(f"s3://{bucket}/minilm/v1", SHAS)
