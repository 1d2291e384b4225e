"""Model files from Azure Blob storage: `https://<account>.blob.core.windows.net/<container>/<prefix>` (or
Azurite's path-style `http://127.0.0.1:<port>/<account>/<container>/<prefix>`).

Authentication: a SAS token in the URL; else the account key when `AzureWebJobsStorage` is a connection string
for the same account (Azurite, key-based setups); else `DefaultAzureCredential` (managed identity).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from azure.storage.blob import BlobClient

from shared.adapters.azure.connection import CLIENT_OPTIONS, StorageConnection, default_credential
from shared.adapters.azure.errors import translated
from shared.domain.errors import ConfigError, NotFound
from shared.settings import Settings


def account_of(url: str) -> str:
    """The storage account a blob URL names: the first label of the host, or (path-style) the first segment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _path_style(host):
        return parts.path.lstrip("/").split("/", 1)[0]
    return host.split(".", 1)[0]


def _path_style(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class BlobModelFiles:
    def __init__(self, account_key: tuple[str, str] | None, client_id: str | None) -> None:
        self._account_key = account_key
        self._client_id = client_id

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobModelFiles:
        key = None
        if settings.storage_connection:
            key = StorageConnection.from_settings(settings).account_key()
        return cls(key, settings.storage_client_id)

    def download(self, source: str, name: str, dest: Path) -> None:
        parts = urlsplit(source)
        path = parts.path.rstrip("/") + "/" + quote(name)
        url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        client = BlobClient.from_blob_url(url, credential=self._credential(source), **CLIENT_OPTIONS)
        try:
            with translated(f"model file {name}"), dest.open("wb") as f:
                client.download_blob().readinto(f)
        except NotFound as exc:
            raise ConfigError(f"model file {name} not found in blob storage under {parts.path}") from exc
        finally:
            client.close()

    def _credential(self, source: str) -> Any:
        if "sig=" in urlsplit(source).query:
            return None  # the SAS token in the URL is the credential
        if self._account_key is not None and self._account_key[0] == account_of(source):
            name, key = self._account_key
            return {"account_name": name, "account_key": key}
        return default_credential(self._client_id)
