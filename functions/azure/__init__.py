"""The Azure Functions host: the HTTP, queue, timer and Event Hub triggers `function_app.py` registers."""
