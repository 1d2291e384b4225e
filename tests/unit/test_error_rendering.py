"""The error renderer answers for any input it echoes, whatever reached it: keys no UTF-8 can carry, values nested
past the stack, non-finite numbers. (The edge refuses bodies deeper than 128 levels; this holds without it.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi.exceptions import RequestValidationError

from functions.http.errors import on_domain_error, on_validation_error
from shared.domain.errors import InvalidInput


def deep(levels: int) -> Any:
    value: Any = 1
    for i in range(levels):
        value = {"\ud800": value} if i % 2 else [value]
    return value


def rendered(exc: Exception) -> Any:
    handler = on_validation_error if isinstance(exc, RequestValidationError) else on_domain_error
    response = asyncio.run(handler(None, exc))  # type: ignore[arg-type]
    assert response.status_code == 422
    return json.loads(bytes(response.body))


def test_a_value_nested_past_the_stack_is_echoed_cut_short() -> None:
    error = {"type": "extra_forbidden", "loc": ("body", "x"), "msg": "Extra inputs are not permitted"}
    body = rendered(RequestValidationError([{**error, "input": deep(50_000)}]))
    text = json.dumps(body)
    assert '"..."' in text and text.count("[") < 100


def test_keys_and_values_no_utf8_can_carry_are_echoed_escaped() -> None:
    echo = {"\ud800": ["\udfff", float("nan")], "ok": {"\udc00key": "é"}}
    (detail,) = rendered(InvalidInput("Extra parameter", loc=("body", "\ud800"), input=echo))["detail"]
    assert detail["loc"] == ["body", "\\ud800"]
    assert detail["input"] == {"\\ud800": ["\\udfff", "nan"], "ok": {"\\udc00key": "é"}}
