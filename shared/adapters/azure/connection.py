"""The storage account from settings: a connection string (Azurite, keys) or identity-based service URIs with
`DefaultAzureCredential`, the way the Functions host reads `AzureWebJobsStorage`. Clients are built lazily and
shared; nothing here connects until an adapter makes a call."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError

from shared.adapters.azure.errors import translated
from shared.domain.errors import ConfigError
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient, TableServiceClient
    from azure.storage.blob import BlobServiceClient, ContainerClient
    from azure.storage.queue import QueueClient, QueueServiceClient

log = logging.getLogger(__name__)

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, in Microsoft's docs): not a secret.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# Bounded retries and timeouts: a storage outage surfaces as StorageUnavailable in seconds, not minutes.
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 3, "connection_timeout": 5, "read_timeout": 30}


def azurite_connection_string(
    blob_port: int = 10000,
    queue_port: int = 10001,
    table_port: int = 10002,
    host: str = "127.0.0.1",
    account: str = AZURITE_ACCOUNT,
    key: str = AZURITE_KEY,
) -> str:
    base = f"http://{host}"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint={base}:{blob_port}/{account};QueueEndpoint={base}:{queue_port}/{account};"
        f"TableEndpoint={base}:{table_port}/{account};"
    )


def parse_connection_string(conn: str) -> dict[str, str]:
    parts = (p.split("=", 1) for p in conn.split(";") if "=" in p)
    return {k.strip(): v.strip() for k, v in parts}


@cache
def default_credential(client_id: str | None) -> TokenCredential:
    """One credential per identity and process (it caches tokens); the user-assigned identity when given."""
    from azure.identity import DefaultAzureCredential

    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()


@dataclass(frozen=True)
class StorageConnection:
    connection_string: str | None = None
    queue_uri: str | None = None
    blob_uri: str | None = None
    table_uri: str | None = None
    client_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageConnection:
        conn = (settings.storage_connection or "").strip()
        if conn.replace(" ", "").rstrip(";").lower() == "usedevelopmentstorage=true":
            conn = azurite_connection_string()
        if conn:
            return cls(connection_string=conn)
        account = settings.storage_account_name
        queue = settings.storage_queue_service_uri or (account and f"https://{account}.queue.core.windows.net")
        blob = settings.storage_blob_service_uri or (account and f"https://{account}.blob.core.windows.net")
        table = settings.storage_table_service_uri or (account and f"https://{account}.table.core.windows.net")
        if not (queue and blob and table):
            raise ConfigError(
                "INFERQ_BACKEND=azure needs a storage account: AzureWebJobsStorage (a connection string, e.g. "
                "Azurite's) or AzureWebJobsStorage__accountName, or AzureWebJobsStorage__queueServiceUri, "
                "__blobServiceUri and __tableServiceUri (identity-based, with AzureWebJobsStorage__clientId)"
            )
        return cls(queue_uri=queue, blob_uri=blob, table_uri=table, client_id=settings.storage_client_id)

    def account_key(self) -> tuple[str, str] | None:
        """(account name, key) when the connection string carries a shared key."""
        if not self.connection_string:
            return None
        parts = parse_connection_string(self.connection_string)
        if "AccountName" in parts and "AccountKey" in parts:
            return parts["AccountName"], parts["AccountKey"]
        return None


class AzureStorage:
    """Service clients for one account, built on first use and shared by every queue, container and table."""

    def __init__(self, connection: StorageConnection) -> None:
        self.connection = connection

    def _credential(self) -> TokenCredential:
        return default_credential(self.connection.client_id)

    @cached_property
    def queues(self) -> QueueServiceClient:
        from azure.storage.queue import QueueServiceClient

        c = self.connection
        if c.connection_string:
            return QueueServiceClient.from_connection_string(c.connection_string, **CLIENT_OPTIONS)
        assert c.queue_uri is not None
        return QueueServiceClient(c.queue_uri, credential=self._credential(), **CLIENT_OPTIONS)

    @cached_property
    def blobs(self) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        c = self.connection
        if c.connection_string:
            return BlobServiceClient.from_connection_string(c.connection_string, **CLIENT_OPTIONS)
        assert c.blob_uri is not None
        return BlobServiceClient(c.blob_uri, credential=self._credential(), **CLIENT_OPTIONS)

    @cached_property
    def tables(self) -> TableServiceClient:
        from azure.data.tables import TableServiceClient

        c = self.connection
        if c.connection_string:
            return TableServiceClient.from_connection_string(c.connection_string, **CLIENT_OPTIONS)
        assert c.table_uri is not None
        return TableServiceClient(c.table_uri, credential=self._credential(), **CLIENT_OPTIONS)

    def close(self) -> None:
        """Close the service clients opened so far (their connection pools with them)."""
        for name in ("queues", "blobs", "tables"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                client.close()

    def queue(self, name: str) -> QueueClient:
        """A queue client that base64-encodes, like the Functions host (host.json `messageEncoding: base64`)."""
        from shared.adapters.azure.encoding import base64_policies

        encode, decode = base64_policies()
        return self.queues.get_queue_client(name, message_encode_policy=encode, message_decode_policy=decode)

    def container(self, name: str) -> ContainerClient:
        return self.blobs.get_container_client(name)

    def table(self, name: str) -> TableClient:
        return self.tables.get_table_client(name)


class CreateOnce:
    """Create a queue, container or table on first use, once per process. Already there is fine, and so is
    not being allowed to create it (least-privilege roles: the Bicep template provisions them)."""

    def __init__(self, what: str, create: Callable[[], object]) -> None:
        self._what, self._create = what, create
        self._done = False
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self._done:
            return
        with self._lock:
            if self._done:
                return
            with translated(f"create {self._what}"):
                try:
                    self._create()
                except ResourceExistsError:
                    pass
                except HttpResponseError as exc:
                    if exc.status_code != 403:
                        raise
                    log.info("not allowed to create %s; assuming it is provisioned", self._what)
            self._done = True
