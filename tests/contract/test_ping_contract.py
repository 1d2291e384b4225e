"""Every port's adapter answers the readiness probe while its backend is up (the failure side, per backend, is in
tests/integration/test_adapter_ping.py)."""

from __future__ import annotations

from shared.domain.ports import BlobStore, DeploymentStats, JobStore, UsageLedger
from tests.contract.conftest import Queues


def test_every_adapter_answers_ping(
    queues: Queues, store: JobStore, blobs: BlobStore, ledger: UsageLedger, stats: DeploymentStats
) -> None:
    for port in (queues.queue, queues.poison, store, blobs, ledger, stats):
        port.ping()
