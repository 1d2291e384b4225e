"""Job results are rendered by pydantic-core: the same JSON documents as Starlette's JSONResponse gives."""

from __future__ import annotations

import json

import numpy as np
from fastapi.responses import JSONResponse

from functions.http.json_response import FastJSONResponse


def test_the_same_documents_as_jsonresponse_and_utf8_as_is() -> None:
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    vector /= np.linalg.norm(vector)
    result = {
        "id": "job_1",
        "data": [{"index": 0, "embedding": vector.tolist(), "text": "naïve 東京 🚀", "tiny": 1e-7}],
        "usage": {"prompt_tokens": 12, "total_tokens": 12},
        "none": None,
        "flag": True,
    }
    fast, plain = FastJSONResponse(result).body, JSONResponse(result).body
    assert json.loads(fast) == json.loads(plain) == result  # every float reads back bit for bit
    assert "naïve 東京 🚀".encode() in fast  # UTF-8, not \\u escapes
    assert json.loads(fast)["data"][0]["embedding"] == [float(x) for x in vector]
