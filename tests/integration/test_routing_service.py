"""Routing in the service, on SQLite: an Idempotency-Key repeat routed to the other deployment is still the same
request, and a mirrored copy is a job of its own (claim-checked separately, never streamed, never shown)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from shared.bootstrap import Inferq, bootstrap
from shared.domain.auth import Caller
from shared.domain.config import load_config
from shared.domain.errors import Conflict, NotFound
from shared.schemas.messages import JobMessage
from shared.settings import Settings
from tests.conftest import CHAT_MODEL_DIR, write_config

ACME = Caller("acme")


def chat(name: str) -> str:
    return (
        f'[[deployments]]\nname = "{name}"\nkind = "chat-completion"\nmodel_name = "{name}"\n'
        f'[deployments.model]\nsource = "{CHAT_MODEL_DIR.as_posix()}"\nfiles = {{}}\n\n'
    )


@pytest.fixture
def service(tmp_path: Path) -> Inferq:
    endpoint = '[[endpoints]]\nname = "chat"\ntraffic = { "a" = 50, "b" = 50 }\nmirror = { "shadow" = 100 }\n'
    config = load_config(write_config(tmp_path / "c.toml", after=chat("a") + chat("b") + chat("shadow") + endpoint))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", config=tmp_path / "x", inline_payload_max_bytes=512)
    return bootstrap(settings, config=config, rng=random.Random(3))


def test_an_idempotent_repeat_routed_to_another_deployment_is_the_same_request(service: Inferq) -> None:
    payload = {"prompt": "same", "max_tokens": 4}
    first = service.gateway.submit(ACME, service.gateway.route("chat", None), payload, "key-1")
    repeats = [service.gateway.submit(ACME, service.gateway.route("chat", None), payload, "key-1") for _ in range(12)]
    assert {r.job.id for r in repeats} == {first.job.id} and not any(r.created for r in repeats)
    with pytest.raises(Conflict):
        service.gateway.submit(ACME, service.gateway.route("chat", None), {**payload, "prompt": "other"}, "key-1")


def test_a_mirrored_copy_is_a_job_of_its_own_never_streamed_and_never_shown(service: Inferq) -> None:
    payload = {"prompt": "x" * 600, "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}
    live = service.gateway.submit(ACME, service.gateway.route("chat", None), payload).job
    mirror_id = f"{live.id}-mirror-shadow"
    mirror = service.store.get(mirror_id)
    assert mirror is not None and (mirror.deployment, mirror.endpoint, mirror.mirrored) == ("shadow", "chat", True)
    assert (live.endpoint, live.mirrored) == ("chat", False)
    assert live.payload_ref != mirror.payload_ref  # each job's payload goes with it when it ends
    copy = json.loads(service.blobs.get(mirror.payload_ref or ""))
    assert copy == {"prompt": "x" * 600, "max_tokens": 4}  # nobody relays a mirror's stream: it doesn't stream
    messages = [JobMessage.model_validate_json(m.body) for m in service.queue.receive(10, 30)]  # type: ignore[attr-defined]
    assert sorted((m.job_id, m.deployment) for m in messages) == sorted(
        [(live.id, live.deployment), (mirror_id, "shadow")]
    )
    with pytest.raises(NotFound):
        service.gateway.get_job(ACME, mirror_id)
    pinned = service.gateway.submit(ACME, service.gateway.route("chat", "a"), {"prompt": "p", "max_tokens": 4}).job
    assert service.store.get(f"{pinned.id}-mirror-shadow") is None  # a request for one deployment is not mirrored
