"""The handlers behind every entry point: gateway (HTTP side), worker (queue side), billing (Event Hub side)."""
