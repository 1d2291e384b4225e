"""Azure Functions entry point: wiring only. The HTTP API (on HTTP streams), the queue worker and the billing
consumer."""

import azure.functions as func

from functions.azure import billing, http, worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http.bp)
app.register_functions(worker.bp)
app.register_functions(billing.bp)
