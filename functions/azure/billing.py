"""The Event Hub-triggered billing consumer: a batch of usage events into the ledger, exactly once."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import telemetry
from shared.bindings import BILLING_CONSUMER_GROUP, EVENTHUB_CONNECTION, USAGE_HUB
from shared.bootstrap import get_app

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.function_name("bill_usage")
@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name=USAGE_HUB,
    connection=EVENTHUB_CONNECTION,
    consumer_group=BILLING_CONSUMER_GROUP,
    cardinality=func.Cardinality.MANY,
)
def bill_usage(events: list[func.EventHubEvent]) -> None:
    # The trigger checkpoints whatever happens here, so the billing handler handles its own errors.
    outcome = get_app().billing.ingest_usage([e.get_body() for e in events], traceparents(events))
    log.info("usage batch: %s", outcome)


def traceparents(events: list[func.EventHubEvent]) -> list[str | None] | None:
    """Each event's `traceparent` application property (the trigger metadata's PropertiesArray holds one entry per
    event of the batch), so billing continues the traces that produced them; None when tracing is off."""
    if not telemetry.tracing() or not events:
        return None
    properties = (events[0].metadata or {}).get("PropertiesArray")
    if not isinstance(properties, list) or len(properties) != len(events):
        return None
    return [
        p.get("traceparent") if isinstance(p, dict) and isinstance(p.get("traceparent"), str) else None
        for p in properties
    ]


@bp.function_name("replay_kept_usage")
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False)
def replay_kept_usage(timer: func.TimerRequest) -> None:  # noqa: ARG001 (the binding needs the argument)
    # Batches the consumer kept while the ledger was unavailable; replaying one twice still bills it once.
    outcome = get_app().billing.replay_kept_usage()
    if outcome.batches or outcome.left:
        log.info("usage replay: %s", outcome)
