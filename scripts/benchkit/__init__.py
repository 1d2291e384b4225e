"""The pieces of `scripts/bench.py`: in-process engine rows, HTTP load, processes (host, peer, Azurite), cost."""
