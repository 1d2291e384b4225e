"""The HTTP API both hosts serve: a FastAPI app (AsgiFunctionApp on Azure, uvicorn locally)."""
