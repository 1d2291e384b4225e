"""Azure Functions entry point: wiring only. The HTTP API (on HTTP streams), the queue worker and the billing
consumer."""

import azure.functions as func

from functions.azure import billing, http, worker
from functions.http.app import app as http_api
from shared.settings import get_settings
from shared.telemetry import setup as telemetry

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http.bp)
app.register_functions(worker.bp)
app.register_functions(billing.bp)

# Azure Monitor when APPLICATIONINSIGHTS_CONNECTION_STRING is set (the Bicep sets it), at start, once per worker.
telemetry.configure(get_settings(), http_api)
