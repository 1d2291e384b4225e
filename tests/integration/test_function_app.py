"""What Azure indexes: the functions and their bindings, read through `app.get_functions()`."""

import subprocess
import sys
import typing

from azurefunctions.extensions.base import RequestTrackerMeta, ResponseTrackerMeta

from functions.azure.indexing import bindings, indexed, trigger
from shared import bindings as names
from tests.conftest import ROOT


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


def test_every_http_function_is_typed_for_http_streams() -> None:
    """With the streams extension imported, the worker serves every HTTP function on HTTP streams and indexes one
    only if its trigger argument and its return are the extension's FastAPI types (azure-functions-python-worker
    `bindings/meta.py`); a classic `func.HttpRequest` function beside it fails the whole app's indexing."""
    http = {name: b for name in indexed() for b in bindings(name) if b["type"] == "httpTrigger"}
    assert list(http) == ["http_app_func"]
    for name, binding in http.items():
        hints = typing.get_type_hints(trigger(name))
        assert RequestTrackerMeta.check_type(hints[binding["name"]]), name
        assert ResponseTrackerMeta.check_type(hints["return"]), name


def test_importing_the_app_alone_switches_http_streams_on() -> None:
    # The worker turns HTTP streams on when indexing imported a web extension; FastAPI's own Request would pass
    # the type checks above in this process (other tests import the extension) but not on Azure.
    code = (
        "import function_app\n"
        "from azurefunctions.extensions.base import HttpV2FeatureChecker, ModuleTrackerMeta\n"
        "assert HttpV2FeatureChecker.http_v2_enabled()\n"
        "print(ModuleTrackerMeta.get_module())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "azurefunctions.extensions.http.fastapi.web"
