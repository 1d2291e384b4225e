"""The example scoring-script deployment (`linear-scorer` in config/inferq.toml) through the real local host:
JSON in, the script's JSON out; its exception as a failed job with the message; billed per 1,000 requests."""

from decimal import Decimal

import pytest

from tests.conftest import KEYS, RunningHost, wait_for

pytestmark = pytest.mark.e2e
ALL_TIME = {"from": "2000-01-01", "granularity": "month"}


def test_a_scoring_script_serves_score_and_its_exception_fails_the_job_with_the_message(host: RunningHost) -> None:
    with host.client() as c:
        r = c.post("/score", json={"model": "linear-scorer", "data": [[1, 2, 3], [0, 0, 0]]})
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": [4.75, 0.25]}  # what run() returned, as it returned it
        assert r.headers["azureml-model-deployment"] == "linear-scorer"
        by_query = c.post("/score", params={"model": "LINEAR-SCORER"}, json={"data": [[2, 0, 1]]})
        assert by_query.status_code == 200 and by_query.json() == {"predictions": [3.25]}

        accepted = c.post(
            "/score", json={"model": "linear-scorer", "data": [[0, 1, 0]]}, headers={"Prefer": "respond-async"}
        )
        assert accepted.status_code == 202
        wait_for(lambda: c.get(accepted.headers["Operation-Location"]).json()["status"] == "succeeded")
        assert c.get(accepted.headers["Operation-Location"]).json()["result"] == {"output": {"predictions": [-0.75]}}

        failed = c.post("/score", json={"model": "linear-scorer", "data": [[1, 2]]})
        assert failed.status_code == 400, failed.text
        assert failed.json()["error"] == {"code": "ScriptError", "message": "ValueError: row 0 must hold 3 numbers"}
        assert failed.json()["job"]["status"] == "failed"
        assert failed.headers["azureml-model-deployment"] == "linear-scorer"

        only = c.post("/score", json={"data": [[1, 2, 3]]})  # no model: the only scoring endpoint
        assert only.status_code == 200 and only.json() == {"predictions": [4.75]}
        assert only.headers["azureml-model-deployment"] == "linear-scorer"
        assert c.post("/embeddings", json={"input": "x", "model": "linear-scorer"}).status_code == 404  # modality
        assert c.post("/score", json={"model": "nope", "data": []}).status_code == 404


def test_scoring_is_billed_per_1000_requests(host: RunningHost) -> None:
    with host.client(KEYS["globex"]) as c:  # only this test's requests
        for i in range(3):
            assert c.post("/score", json={"model": "linear-scorer", "data": [[i, i, i]]}).status_code == 200
        assert c.post("/score", json={"model": "linear-scorer", "data": "bad"}).status_code == 400  # not billed

        def items() -> list[dict]:
            return c.get("/usage", params=ALL_TIME).json()["items"]

        wait_for(lambda: [i.get("requests") for i in items()] == [3])
        (item,) = items()
        assert (item["deployment"], item["meter"], item["unit"], item["quantity"]) == (
            "linear-scorer",
            "requests",
            "1K requests",
            "0.003",
        )
        assert Decimal(item["cost"]) == Decimal("0.01") * 3 / 1000  # 0.01 per 1,000 requests
        body = c.get("/usage", params=ALL_TIME).json()
        assert (body["total_requests"], body["total_tokens"]) == (3, 0)
        csv = c.get("/usage", params=ALL_TIME, headers={"Accept": "text/csv"}).text
        assert csv.splitlines()[0].split(",")[4:7] == ["tokens", "requests", "quantity"]
