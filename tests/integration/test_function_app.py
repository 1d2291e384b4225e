"""What Azure indexes: the functions and their bindings, read through `app.get_functions()`."""

from functions.azure.indexing import bindings, indexed
from shared import bindings as names


def test_the_app_indexes_the_http_worker_and_billing_functions() -> None:
    assert {"http_app_func", "run_job", "fail_poisoned_job", "publish_pending_usage", "bill_usage"} <= set(indexed())


def test_the_http_function_serves_every_route_anonymously() -> None:
    (trigger, *_) = [b for b in bindings("http_app_func") if b["type"] == "httpTrigger"]
    assert trigger["route"] == "/{*route}"
    assert trigger["authLevel"] == "ANONYMOUS"  # the API checks its own keys


def test_the_worker_listens_on_the_job_queue_and_the_poison_queue() -> None:
    (job,) = bindings("run_job")
    assert (job["type"], job["queueName"], job["connection"]) == (
        "queueTrigger",
        names.JOB_QUEUE,
        "AzureWebJobsStorage",
    )
    (poison,) = bindings("fail_poisoned_job")
    assert (poison["queueName"], poison["connection"]) == (f"{names.JOB_QUEUE}-poison", "AzureWebJobsStorage")


def test_the_billing_consumer_reads_the_usage_hub_in_batches() -> None:
    (hub,) = bindings("bill_usage")
    assert hub["type"] == "eventHubTrigger"
    assert hub["eventHubName"] == names.USAGE_HUB == "inferq-usage"
    assert hub["connection"] == names.EVENTHUB_CONNECTION
    assert hub["consumerGroup"] == "billing"
    assert hub["cardinality"] == "MANY"
