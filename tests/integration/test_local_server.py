"""The local host's HTTP server: uvicorn on its C event loop and HTTP parser, as the requirements install them
(uvicorn[standard]'s, what a FastAPI server gets from FastAPI's recommended install)."""

from __future__ import annotations

import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from functions.local.host import server_config
from shared.settings import Settings


def test_the_local_host_serves_on_uvloop_and_httptools() -> None:
    config = server_config(Settings())
    config.load()

    assert config.http_protocol_class is HttpToolsProtocol
    assert config.get_loop_factory() is uvloop.new_event_loop
