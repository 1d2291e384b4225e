"""Wire contracts: HTTP bodies, queue messages and usage events (pydantic v2)."""
