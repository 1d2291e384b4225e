"""Usage log contract (the in-memory fake and the embedded SQLite log): events partitioned by tenant, read per
partition in publish order with consecutive offsets, and checkpoints kept per consumer group.

No Azure case: there the stream is an Event Hubs producer, whose emulator is Docker-only (see the fixture).
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from shared.adapters.memory import MemoryUsageLog
from shared.adapters.sqlite.usage_log import SqliteUsageLog, partition_for
from shared.schemas.usage import UsageEvent
from tests.conftest import ledger_event

Log = MemoryUsageLog | SqliteUsageLog
T0 = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)
TENANTS = ("acme", "initech", "globex")  # acme and globex share a partition of four, initech has its own


def event(job: str, tenant: str = "acme", tokens: int = 5) -> UsageEvent:
    return ledger_event(job, tenant, tokens, T0)


def everything(log: Log, group: str, max_events: int = 1000) -> dict[int, list[tuple[int, UsageEvent]]]:
    """Every partition's unread events (offset, event), without checkpointing."""
    return {
        p: [(e.offset, UsageEvent.model_validate_json(e.body)) for e in log.read(group, p, max_events)]
        for p in range(log.partitions)
    }


def test_each_tenant_lands_in_one_partition_in_publish_order(usage_log: Log) -> None:
    published = [event(f"job_{i}", TENANTS[i % 3]) for i in range(12)]
    usage_log.publish(published[:5])
    usage_log.publish(published[5:])
    read = everything(usage_log, "billing")
    assert len({partition_for(t, usage_log.partitions) for t in TENANTS}) > 1  # the test spans partitions
    for partition, entries in read.items():
        assert [offset for offset, _ in entries] == list(range(len(entries)))  # consecutive, from 0
        expected = [e for e in published if partition_for(e.tenant, usage_log.partitions) == partition]
        assert [e for _, e in entries] == expected  # in the order published, across publish calls
    assert sorted(e.id for entries in read.values() for _, e in entries) == sorted(e.id for e in published)


def test_a_checkpoint_moves_only_its_own_group_on_its_own_partition(usage_log: Log) -> None:
    usage_log.publish([event(f"job_a{i}") for i in range(5)] + [event("job_i0", "initech")])
    acme, initech = partition_for("acme", usage_log.partitions), partition_for("initech", usage_log.partitions)
    first = usage_log.read("billing", acme, 2)
    assert [e.offset for e in first] == [0, 1] and all(e.partition == acme for e in first)
    assert [e.offset for e in usage_log.read("billing", acme, 2)] == [0, 1]  # reading alone moves nothing
    usage_log.checkpoint("billing", acme, first[-1].offset)
    rest = usage_log.read("billing", acme, 100)
    assert [UsageEvent.model_validate_json(e.body).job_id for e in rest] == ["job_a2", "job_a3", "job_a4"]
    assert [e.offset for e in usage_log.read("audit", acme, 100)] == [0, 1, 2, 3, 4]  # another group: from 0
    assert [e.offset for e in usage_log.read("billing", initech, 100)] == [0]  # another partition: from 0
    usage_log.checkpoint("billing", acme, rest[-1].offset)
    assert usage_log.read("billing", acme, 100) == []
    usage_log.publish([event("job_a5")])
    (late,) = usage_log.read("billing", acme, 100)
    assert late.offset == 5 and UsageEvent.model_validate_json(late.body).job_id == "job_a5"


def test_raw_bodies_are_kept_as_written(usage_log: Log) -> None:
    # What any producer can write, valid or not: the billing consumer dead-letters what it can't parse.
    usage_log.append([("acme", "not json"), ("acme", '{"v": 99}')])
    acme = partition_for("acme", usage_log.partitions)
    assert [(e.offset, e.body) for e in usage_log.read("billing", acme, 10)] == [(0, "not json"), (1, '{"v": 99}')]
    assert usage_log.read("billing", acme, 0) == []


def test_concurrent_publishers_get_consecutive_offsets_and_lose_nothing(usage_log: Log) -> None:
    batches = [[event(f"job_{w}_{i}", TENANTS[(w + i) % 3]) for i in range(25)] for w in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(usage_log.publish, batches))
    read = everything(usage_log, "billing")
    per_tenant: dict[str, list[str]] = defaultdict(list)
    for entries in read.values():
        assert [offset for offset, _ in entries] == list(range(len(entries)))
        for _, e in entries:
            per_tenant[e.tenant].append(e.id)
    for batch in batches:  # one publisher's events of a tenant keep their order
        for tenant in TENANTS:
            mine = [e.id for e in batch if e.tenant == tenant]
            assert [i for i in per_tenant[tenant] if i in mine] == mine
    assert sum(len(ids) for ids in per_tenant.values()) == 100
