"""The billing consumer through the function objects Azure indexes, with real `func.EventHubEvent`s, on SQLite."""

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from functions.azure.indexing import bindings, trigger
from functions.local.runtime import UsageConsumer
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.application import usage_ingest as billing_ingest
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.config import AppConfig
from shared.domain.errors import StorageUnavailable
from shared.domain.ports import IngestResult, UsageLedger, UsageTotal
from shared.schemas.usage import UsageEvent
from shared.settings import Settings
from tests.conftest import ledger_event

T0 = datetime(2024, 5, 1, 13, 5, tzinfo=UTC)
ALL_TIME = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture
def service(settings: Settings, config: AppConfig) -> Iterator[Inferq]:
    svc = bootstrap(settings.model_copy(update={"usage_ingest_backoff_s": 0}), config=config)
    set_app(svc)
    yield svc
    set_app(None)


def event(job: str, tokens: int, tenant: str = "acme", time: datetime = T0) -> UsageEvent:
    return ledger_event(job, tenant, tokens, time)


def hub_events(bodies: Sequence[str | bytes]) -> list[func.EventHubEvent]:
    return [
        func.EventHubEvent(body=b if isinstance(b, bytes) else b.encode(), sequence_number=i, offset=str(i))
        for i, b in enumerate(bodies)
    ]


def totals(service: Inferq) -> dict[tuple[str, datetime], int]:
    return {(t.tenant, t.period_start): t.tokens for t in service.ledger.hourly_totals(None, *ALL_TIME)}


def kept(service: Inferq, prefix: str) -> list[dict]:
    return [json.loads(service.blobs.get(k)) for k in service.blobs.list_keys(prefix, 100)]


def test_a_malformed_event_is_dead_lettered_and_the_rest_of_its_batch_billed(service: Inferq) -> None:
    good = [event("job-1", 10).model_dump_json(), event("job-2", 32, tenant="globex").model_dump_json()]
    malformed = json.dumps({**json.loads(good[0]), "id": "job-3:input_tokens", "tokens": -5})
    trigger("bill_usage")(hub_events([good[0], malformed, good[1], b"\x00not json"]))
    hour = T0.replace(minute=0)
    assert totals(service) == {("acme", hour): 10, ("globex", hour): 32}
    letters = kept(service, billing_ingest.DEAD_LETTER_PREFIX)
    assert sorted(letter["body"] for letter in letters) == sorted([malformed, "\x00not json"])
    reasons = {letter["body"]: letter["reason"] for letter in letters}
    assert "tokens: Input should be greater than or equal to 0" in reasons[malformed]
    assert "Invalid JSON" in reasons["\x00not json"]


def test_replaying_the_whole_stream_from_the_first_offset_changes_no_total(service: Inferq) -> None:
    log = service.stream
    assert isinstance(log, SqliteUsageLog)
    events = [
        event(f"job-{i}", i, tenant=("acme", "globex", "initech")[i % 3], time=T0 + timedelta(minutes=7 * i))
        for i in range(300)
    ]
    for i in range(0, 300, 25):
        log.publish(events[i : i + 25])
    consumer = UsageConsumer(log, trigger("bill_usage"), max_batch=64)
    while consumer.consume_once():
        pass
    first = totals(service)
    assert sum(first.values()) == sum(range(300))

    # A consumer group that has checkpointed nothing reads the stream again from its first offset.
    replayer = UsageConsumer(log, trigger("bill_usage"), consumer_group="replay", max_batch=64)
    assert replayer.consume_once() > 0  # it really is read again
    while replayer.consume_once():
        pass
    assert totals(service) == first


class FlakyLedger:
    """The real ledger behind an outage of `down` calls."""

    def __init__(self, ledger: UsageLedger, down: int) -> None:
        self.ledger, self.down = ledger, down

    def ingest(self, events: Sequence[UsageEvent]) -> IngestResult:
        if self.down:
            self.down -= 1
            raise StorageUnavailable("ledger unavailable")
        return self.ledger.ingest(events)

    def hourly_totals(self, tenant: str | None, start: datetime, end: datetime) -> list[UsageTotal]:
        return self.ledger.hourly_totals(tenant, start, end)


def test_a_batch_kept_through_an_outage_is_billed_once_by_the_replay_timer(service: Inferq) -> None:
    service.billing.ledger = FlakyLedger(service.ledger, down=service.settings.usage_ingest_attempts)
    bodies = [event("job-1", 10).model_dump_json(), event("job-2", 5).model_dump_json()]
    trigger("bill_usage")(hub_events(bodies))  # every attempt fails: kept, and the trigger checkpoints
    assert totals(service) == {} and len(kept(service, billing_ingest.REPLAY_PREFIX)) == 1

    trigger("bill_usage")(hub_events(bodies[:1]))  # the ledger is back; job-1 also came through again
    trigger("replay_kept_usage")(None)
    trigger("replay_kept_usage")(None)
    assert totals(service) == {("acme", T0.replace(minute=0)): 15}
    assert kept(service, billing_ingest.REPLAY_PREFIX) == []


def test_the_replay_timer_is_indexed() -> None:
    (timer,) = bindings("replay_kept_usage")
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "0 */5 * * * *"
