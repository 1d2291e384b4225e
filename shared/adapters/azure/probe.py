"""Readiness probes of the Azure adapters: one cheap call, no retries, short socket timeouts, and a deadline
around it all (a token request or an AMQP handshake has timeouts of its own that can run to a minute).

The adapters' everyday clients retry for tens of seconds (`CLIENT_OPTIONS`): right for work, wrong for a probe,
which must answer in seconds and is repeated by whoever asks. A 404 is an answer: the service is up, and the queue,
table or container is created on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from shared.adapters.azure.errors import translated
from shared.domain.errors import NotFound, StorageUnavailable

PING_TIMEOUT_S = 3.0
# Per-operation options of the storage and tables clients (they override the client's own for that call).
PING_OPTIONS: dict[str, Any] = {
    "retry_total": 0,
    "connection_timeout": PING_TIMEOUT_S,
    "read_timeout": PING_TIMEOUT_S,
}


def ping(
    what: str,
    call: Callable[[], object],
    *,
    timeout_s: float = PING_TIMEOUT_S,
    transient: tuple[type[Exception], ...] = (),
) -> None:
    """Run `call` in a daemon thread; return when it answers, raise StorageUnavailable when it fails or has not
    answered within `timeout_s` (the thread is left to the client's own timeouts, never waited for)."""
    failure: list[StorageUnavailable] = []
    done = threading.Event()

    def probe() -> None:
        try:
            with translated(what, transient=transient):
                call()
        except NotFound:
            pass
        except StorageUnavailable as exc:
            failure.append(exc)
        except Exception as exc:  # whatever else a probe meets (a credential, a bad setting) means not ready
            unavailable = StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}")
            unavailable.__cause__ = exc
            failure.append(unavailable)
        finally:
            done.set()

    threading.Thread(target=probe, name=f"ping {what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise StorageUnavailable(f"{what}: no answer within {timeout_s:g} s")
    if failure:
        raise failure[0]
