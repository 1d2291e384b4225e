"""The Azure Functions host: the queue, timer and Event Hub triggers `function_app.py` registers."""
