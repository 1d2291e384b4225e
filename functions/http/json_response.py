"""JSON responses rendered by pydantic-core (Rust) instead of the json module: an embeddings result's 384 floats
take about a tenth of the time, and a sync request renders one on the event loop, where every request waits."""

from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        # Same JSON as JSONResponse (UTF-8, compact, keys in order); a NaN or infinity renders as null, where the
        # json module would fail the response: no result carries one (vectors are unit-norm, usage is integers).
        return pydantic_core.to_json(content)
