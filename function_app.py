"""Azure Functions entry point: wiring only. The HTTP API, the queue worker and the billing consumer."""

import azure.functions as func

from functions.azure import billing, worker
from functions.http.app import app as http_api

app = func.AsgiFunctionApp(app=http_api, http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(worker.bp)
app.register_functions(billing.bp)
