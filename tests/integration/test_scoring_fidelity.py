"""Scoring scripts as Azure ML runs them, through the HTTP app, the queue and the worker on SQLite: run() sees
AZUREML_MODEL_DIR and gets the body byte for byte; a `@rawhttp` script gets any bytes with their content type;
`/score` without a model reaches the only scoring endpoint, and `/score/{endpoint}` names one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.adapters.model_source import sha256_of
from shared.bootstrap import Inferq
from tests.conftest import KEYS, app_client, write_config
from tests.integration.test_worker import drain, pump, usage_bodies

ASYNC = {"api-key": KEYS["acme"], "Prefer": "respond-async"}
ECHO = """import os

def init():
    global at_init
    at_init = os.environ["AZUREML_MODEL_DIR"]

def run(raw_data):
    return {"at_init": at_init, "in_run": os.environ.get("AZUREML_MODEL_DIR"), "raw": raw_data}
"""
RAW_ECHO = """import os
from azureml.contrib.services.aml_request import AMLRequest, rawhttp

def init():
    pass

@rawhttp
def run(request):
    return {
        "is_request": isinstance(request, AMLRequest),
        "content_type": request.headers["Content-Type"],
        "mimetype": request.mimetype,
        "hex": request.get_data().hex(),
        "in_run": os.environ.get("AZUREML_MODEL_DIR"),
    }
"""


def deployment(tmp_path: Path, name: str, source: str) -> str:
    folder = tmp_path / name
    (folder / "model").mkdir(parents=True)
    (folder / "score.py").write_text(source)
    return (
        f'[[deployments]]\nname = "{name}"\nkind = "score"\nmodel_name = "{name}"\nscript = "score.py"\n'
        f'[deployments.code]\nsource = "{folder}"\nfiles = {{ "score.py" = "{sha256_of(folder / "score.py")}" }}\n'
        f'[deployments.model]\nsource = "{folder / "model"}"\nfiles = {{}}\n'
    )


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    scripts = deployment(tmp_path, "echo", ECHO) + deployment(tmp_path, "raw-echo", RAW_ECHO)
    return write_config(tmp_path / "inferq.toml", after=scripts)


@pytest.fixture
def client(service: Inferq) -> Iterator[TestClient]:
    with app_client(service) as c:
        yield c


def scored(client: TestClient, service: Inferq, path: str, content: bytes, content_type: str | None) -> Any:
    """The finished job of a request (async, run by the queue trigger)."""
    headers = {**ASYNC, **({"content-type": content_type} if content_type else {})}
    r = client.post(path, content=content, headers=headers)
    assert r.status_code == 202, r.text
    drain(pump(service))
    return client.get(r.headers["Operation-Location"], headers=ASYNC).json()


# Whitespace, key order, number spelling and escapes a re-serialisation would change.
ODD_JSON = b'{ "z" :1,\n\t"model":"echo", "a":"caf\\u00e9 \\/ \\"q\\"", "n": 1.50E+2 ,"e":[ ] }'


def test_run_sees_azureml_model_dir_and_gets_the_body_byte_for_byte(
    client: TestClient, service: Inferq, tmp_path: Path
) -> None:
    model_dir = str((tmp_path / "echo" / "model").resolve())
    job = scored(client, service, "/score", ODD_JSON, "application/json")
    assert job["status"] == "succeeded", job
    assert job["result"]["output"] == {"at_init": model_dir, "in_run": model_dir, "raw": ODD_JSON.decode()}
    by_path = scored(client, service, "/score/ECHO", b'[1, 2.0,"\\u00e9"]', "application/json")
    assert by_path["result"]["output"]["raw"] == '[1, 2.0,"\\u00e9"]' and by_path["endpoint"] == "echo"
    utf16 = '{"x": "é"}'.encode("utf-16-le")  # JSON allows UTF-16: run() gets its text
    assert scored(client, service, "/score/echo", utf16, None)["result"]["output"]["raw"] == '{"x": "é"}'


def test_a_rawhttp_script_gets_the_bytes_and_content_type_of_any_body(
    client: TestClient, service: Inferq, tmp_path: Path
) -> None:
    content = b"a,b\r\n1,\xff\x00\n"  # not JSON, not even UTF-8
    job = scored(client, service, "/score/raw-echo", content, "text/csv; charset=latin-1")
    assert job["status"] == "succeeded", job
    assert job["result"]["output"] == {
        "is_request": True,
        "content_type": "text/csv; charset=latin-1",
        "mimetype": "text/csv",
        "hex": content.hex(),
        "in_run": str((tmp_path / "raw-echo" / "model").resolve()),
    }
    as_json = scored(client, service, "/score?model=raw-echo", ODD_JSON, "application/json")  # its `model`: echo
    assert as_json["endpoint"] == "echo"
    raw_json = scored(client, service, "/score/raw-echo", ODD_JSON, "application/json")
    assert raw_json["result"]["output"]["hex"] == ODD_JSON.hex()


def test_a_body_that_is_not_json_fails_its_job_for_a_script_that_takes_json_and_bills_nothing(
    client: TestClient, service: Inferq
) -> None:
    job = scored(client, service, "/score/echo", b"\x89PNG\r\n", "image/png")
    assert job["status"] == "failed" and job["error"]["code"] == "InvalidInput", job
    assert "not JSON" in job["error"]["message"] and "@rawhttp" in job["error"]["message"]
    assert usage_bodies(service) == []


def test_score_without_a_model_is_404_naming_the_scoring_endpoints_when_there_are_several(client: TestClient) -> None:
    r = client.post("/score", json={"data": [[1, 2, 3]]}, headers=ASYNC)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["message"].endswith("name one as `model` (linear-scorer, echo, raw-echo).")
    unknown = client.post("/score/nope", json={}, headers=ASYNC)
    assert unknown.status_code == 404 and "Unknown model 'nope'" in unknown.json()["error"]["message"]
