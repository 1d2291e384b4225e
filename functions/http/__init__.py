"""The HTTP API both hosts serve: a FastAPI app (an HTTP streams function on Azure, uvicorn locally)."""
