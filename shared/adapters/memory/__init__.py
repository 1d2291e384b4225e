"""In-memory adapters for every port: no I/O, thread-safe, with the embedded (SQLite/file) adapters' semantics.

For tests and experiments; the contract suites in `tests/contract/` hold them to the same behaviour as the
SQLite and Azure adapters, so a unit test on a fake means what it says.
"""

from shared.adapters.memory.blobs import MemoryBlobStore
from shared.adapters.memory.jobs import MemoryJobStore
from shared.adapters.memory.ledger import MemoryUsageLedger
from shared.adapters.memory.queue import MemoryJobQueue
from shared.adapters.memory.reservations import MemoryBudgetReservations
from shared.adapters.memory.stats import MemoryDeploymentStats
from shared.adapters.memory.usage_log import MemoryUsageLog

__all__ = [
    "MemoryBlobStore",
    "MemoryBudgetReservations",
    "MemoryDeploymentStats",
    "MemoryJobQueue",
    "MemoryJobStore",
    "MemoryUsageLedger",
    "MemoryUsageLog",
]
