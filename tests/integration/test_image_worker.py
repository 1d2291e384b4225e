"""Image-embeddings jobs in the worker, on SQLite and the tiny CLIP model: a producer that queues directly (no edge
check) gets its bad image refused by the worker, naming the input, without retries; a good job is billed what it
reports; the image decoders are bounded however the limits are set."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from PIL import Image
from tokenizers import Tokenizer

from shared.bootstrap import Inferq
from shared.domain.auth import Caller
from shared.domain.errors import InputTooLarge, InvalidInput
from shared.domain.jobs import JobStatus
from shared.runtimes import images
from tests.conftest import ROOT
from tests.integration.test_worker import drain, pump, usage_bodies

ACME = Caller("acme")
pytestmark = pytest.mark.usefixtures("installed")


def png(size: tuple[int, int] = (20, 10)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def run(service: Inferq, payload: dict[str, Any]) -> Any:
    deployment = service.config.deployment("tiny-random-clip")
    job_id = service.gateway.submit(ACME, deployment, payload).job.id
    drain(pump(service))
    return service.gateway.get_job(ACME, job_id)


def test_a_queued_bad_image_fails_its_job_naming_the_input_once(service: Inferq) -> None:
    truncated = png()[:-40]
    job = run(service, {"input": [{"image": png()}, {"image": truncated}]})
    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert job.error.code == "InvalidInput" and job.error.message.startswith("Input 1: ")


def test_a_queued_oversized_image_fails_as_too_large(service: Inferq) -> None:
    job = run(service, {"input": [{"image": png((9000, 1))}]})
    assert job.status is JobStatus.FAILED and job.error.code == "PayloadTooLarge"
    assert "Input 0: The image is 9,000×1 pixels" in job.error.message


def test_a_queued_good_job_reports_image_and_text_tokens(service: Inferq) -> None:
    job = run(service, {"input": ["a photo of a cat", {"image": png(), "text": "a cat"}]})
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert len(job.result["data"]) == 2 and len(job.result["data"][0]["embedding"]) == 32
    # The texts with their start and end tokens, and one image of (32 / 8)² + 1 tokens.
    tokenizer = Tokenizer.from_file(str(ROOT / "config" / "demo" / "tiny-clip" / "tokenizer.json"))
    texts = sum(len(tokenizer.encode(t).ids) for t in ("a photo of a cat", "a cat"))
    assert job.result["usage"]["prompt_tokens"] == texts + 17
    events = [json.loads(b) for b in usage_bodies(service)]
    assert [(e["meter"], e["tokens"]) for e in events if e["job_id"] == job.id] == [("input_tokens", texts + 17)]


LIMITS = images.ImageLimits(max_bytes=1_000, max_side=64, max_pixels=1_000)


def test_every_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after: these limits are tiny
    loc = ("body", "input", 0, "image")
    with pytest.raises(InputTooLarge, match="bytes"):
        images.image_bytes("A" * 2_000, LIMITS, loc)
    with pytest.raises(InputTooLarge, match="1600 pixels"):  # under the side limit, over the total
        images.check(base64.b64decode(png((40, 40)).split(",")[1]), LIMITS, loc)
    with pytest.raises(InvalidInput, match="Image URLs are not fetched"):
        images.image_bytes("https://example.com/cat.png", LIMITS, loc)
    with pytest.raises(InvalidInput, match="not an image type"):
        images.image_bytes("data:text/plain;base64,aGVsbG8=", LIMITS, loc)
    data = images.image_bytes(png((8, 8)).replace("data:image/png", "DATA:image/PNG"), LIMITS, loc)
    assert images.check(data, LIMITS, loc) == ("PNG", 8, 8)
