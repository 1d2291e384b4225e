"""The blob store on Azure Blob storage: claim-check payloads, large job results, kept usage batches."""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters.azure.connection import CreateOnce
from shared.adapters.azure.errors import translated
from shared.adapters.azure.probe import PING_OPTIONS, PING_TIMEOUT_S, ping

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient


class AzureBlobStore:
    ping_timeout_s = PING_TIMEOUT_S

    def __init__(self, container: ContainerClient) -> None:
        self.container = container
        self._create = CreateOnce(f"container {container.container_name}", container.create_container)

    def ping(self) -> None:
        ping(
            f"container {self.container.container_name}",
            lambda: self.container.get_container_properties(**PING_OPTIONS),
            timeout_s=self.ping_timeout_s,
        )

    def put(self, key: str, data: bytes) -> None:
        self._create()
        with translated(f"write blob {key}"):
            self.container.upload_blob(key, data, overwrite=True)

    def get(self, key: str) -> bytes:
        self._create()
        with translated(f"blob {key}"):
            return self.container.download_blob(key).readall()

    def delete(self, key: str) -> None:
        self._create()
        with translated(f"delete blob {key}"):
            try:
                self.container.delete_blob(key)
            except ResourceNotFoundError:
                pass

    def list_keys(self, prefix: str, limit: int) -> list[str]:
        if limit <= 0:
            return []
        self._create()
        with translated(f"list blobs {prefix}*"):
            names = self.container.list_blob_names(name_starts_with=prefix, results_per_page=min(limit, 5000))
            return list(islice(names, limit))  # the service lists in name order
