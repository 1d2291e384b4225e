"""The functions Azure indexes, read once: `FunctionApp.get_functions()` refuses a second call in a process."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

from azure.functions.decorators.function_app import Function


@cache
def indexed() -> dict[str, Function]:
    import function_app

    return {str(fn.get_function_name()): fn for fn in function_app.app.get_functions()}


def trigger(name: str) -> Callable[..., Any]:
    """The user function Azure would call for the function `name`."""
    fn: Callable[..., Any] = indexed()[name].get_user_function()
    return fn


def bindings(name: str) -> list[dict[str, Any]]:
    """The bindings as the worker reports them to the host (function.json shape)."""
    raw: list[str] = indexed()[name].get_raw_bindings()
    return [json.loads(b) for b in raw]
