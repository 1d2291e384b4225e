"""Embedded adapters on SQLite files: the default backend and the local host's engine."""
