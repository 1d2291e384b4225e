"""The entry points: the HTTP API (`http`), the Azure Functions triggers (`azure`) and the local host (`local`)."""
