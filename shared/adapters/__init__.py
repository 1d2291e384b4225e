"""Adapters for the ports: `sqlite` (embedded default), `azure` (Storage, Event Hubs), `memory` (fakes that pass the
same contract suites), blobs on disk (`files`), job signals in process (`signals`), model sources."""
