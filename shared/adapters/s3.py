"""Model files from S3 or an S3-compatible store: `s3://bucket/prefix`, endpoint from `INFERQ_S3_ENDPOINT_URL`,
credentials wherever boto3 looks for them (environment, profile, instance role)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.domain.errors import ConfigError, StorageUnavailable


def split_s3_url(source: str) -> tuple[str, str]:
    bucket, _, prefix = source.removeprefix("s3://").partition("/")
    if not bucket:
        raise ConfigError(f"model source {source!r} names no bucket (expected s3://bucket/prefix)")
    return bucket, prefix.strip("/")


class S3ModelFiles:
    def __init__(self, endpoint_url: str | None = None, region: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)

    def download(self, source: str, name: str, dest: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        bucket, prefix = split_s3_url(source)
        key = f"{prefix}/{name}" if prefix else name
        try:
            with dest.open("wb") as f:
                self._client.download_fileobj(bucket, key, f)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NoSuchBucket", "403", "AccessDenied"):
                raise ConfigError(f"model file s3://{bucket}/{key}: {code}") from exc
            raise StorageUnavailable(f"model file s3://{bucket}/{key}: {code or exc}") from exc
        except NoCredentialsError as exc:
            raise ConfigError(f"model file s3://{bucket}/{key}: no AWS credentials found") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"model file s3://{bucket}/{key}: {exc}") from exc
