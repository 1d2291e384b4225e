"""The local host's start: uvicorn on its C event loop and HTTP parser, as the requirements install them
(uvicorn[standard]'s, what a FastAPI server gets from FastAPI's recommended install), and the deployments it
loads before serving (INFERQ_PRELOAD; tests/e2e/test_preload.py runs the host with it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from functions.local.host import preloaded, server_config
from shared.domain.config import load_config
from shared.domain.errors import ConfigError
from shared.settings import Settings
from tests.conftest import write_config


def test_the_local_host_serves_on_uvloop_and_httptools() -> None:
    config = server_config(Settings())
    config.load()

    assert config.http_protocol_class is HttpToolsProtocol
    assert config.get_loop_factory() is uvloop.new_event_loop


def test_preload_names_the_deployments_to_load_at_start(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "inferq.toml"))
    every = [d.name for d in config.deployments]

    assert [d.name for d in preloaded(config, "*")] == every
    assert preloaded(config, "") == [] and preloaded(config, " , ") == []
    assert [d.name for d in preloaded(config, "tiny-random-chat, ALL-MINILM-L6-V2")] == [
        name for name in every if name in ("all-MiniLM-L6-v2", "tiny-random-chat")
    ]  # in the config's order, names matched case-insensitively
    with pytest.raises(ConfigError, match="INFERQ_PRELOAD names no deployment of the config: nope"):
        preloaded(config, "all-MiniLM-L6-v2,nope")
