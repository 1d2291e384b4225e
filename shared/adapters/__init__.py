"""Adapters for the ports: `sqlite` (embedded default), `azure` (Storage, Event Hubs), model sources."""
