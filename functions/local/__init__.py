"""The local host: one process, embedded SQLite, the same function objects Azure calls. `python -m functions.local`."""
