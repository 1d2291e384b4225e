"""BlobStore contract (fake, files and Azure Blob storage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.files import FileBlobStore
from shared.domain.errors import NotFound, StorageUnavailable
from shared.domain.ports import BlobStore


def test_put_get_overwrite_delete(blobs: BlobStore) -> None:
    blobs.put("payloads/job_1.json", b'{"input": "x"}')
    assert blobs.get("payloads/job_1.json") == b'{"input": "x"}'
    blobs.put("payloads/job_1.json", b"second")
    assert blobs.get("payloads/job_1.json") == b"second"
    blobs.delete("payloads/job_1.json")
    with pytest.raises(NotFound):
        blobs.get("payloads/job_1.json")
    blobs.delete("payloads/job_1.json")  # deleting what is gone is fine


def test_large_binary_blobs_round_trip(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    blobs.put("results/big.bin", data)
    assert blobs.get("results/big.bin") == data


def test_list_keys_by_prefix_in_key_order_up_to_a_limit(blobs: BlobStore) -> None:
    for key in ("replay/usage/b.json", "replay/usage/a.json", "replay/usage/c.json", "deadletter/usage/z.json"):
        blobs.put(key, b"{}")
    assert blobs.list_keys("replay/usage/", 10) == ["replay/usage/a.json", "replay/usage/b.json", "replay/usage/c.json"]
    assert blobs.list_keys("replay/usage/", 2) == ["replay/usage/a.json", "replay/usage/b.json"]
    assert blobs.list_keys("nothing/", 10) == []


def test_a_file_store_that_cannot_write_says_so_as_a_domain_error(tmp_path: Path) -> None:
    # The embedded store's OSError (disk full, read-only, a file where a folder should be) is StorageUnavailable,
    # like the Azure store's outage: callers handle TransientError, never a foreign exception.
    store = FileBlobStore(tmp_path / "blobs")
    (tmp_path / "blobs" / "payloads").write_text("not a folder")
    with pytest.raises(StorageUnavailable):
        store.put("payloads/job_1.json", b"{}")
    with pytest.raises(StorageUnavailable):
        store.get("payloads/job_1.json")
    with pytest.raises(NotFound):
        store.get("results/none.json")
