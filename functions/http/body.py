"""Request bodies read as JSON one strict way on every route: UTF-8 (or the UTF-16/32 JSON allows), unique keys,
at most MAX_DEPTH levels. Whatever fails is a `json.JSONDecodeError` naming why, which FastAPI answers 422."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

# Far deeper than any request needs (scoring data stops at 64), far shallower than what exhausts Python's stack in
# the parser, pydantic, the error renderer or the queue message's encoder (~1,000 frames, shared with the server).
MAX_DEPTH = 128
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"


def parse_json(raw: bytes) -> Any:
    """The body's JSON value. A refusal without a position in the text carries an empty `doc`."""
    try:
        value = json.loads(raw, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError:
        raise
    except _DuplicateKey as exc:
        raise json.JSONDecodeError(str(exc), "", 0) from None
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"not valid UTF-8 (byte {exc.start})", "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError(TOO_DEEP, "", 0) from None
    except ValueError:  # the one other: an integer past Python's conversion limit
        raise json.JSONDecodeError(f"a number has more than {sys.get_int_max_str_digits()} digits", "", 0) from None
    # Cheap first: a body with few brackets can't be deep (an embeddings body has one or two).
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise json.JSONDecodeError(TOO_DEEP, "", 0)
    return value


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON leaves a repeated key's meaning open (Python keeps the last, other readers the first): refused."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"duplicate key {key!r}")  # repr: a lone surrogate shows as its escape
            seen.add(key)
    return obj


def _deeper_than(value: Any, limit: int) -> bool:
    """Level by level, without recursion (what a deep value would exhaust)."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        if not level:
            return False
        level = [
            child
            for parent in level
            for child in (parent.values() if isinstance(parent, dict) else parent)
            if isinstance(child, dict | list)
        ]
    return bool(level)


def read_json(raw: bytes) -> Any:
    """`parse_json` for a body read outside FastAPI's parsing, refused the way FastAPI refuses one."""
    try:
        return parse_json(raw)
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {}}
        raise RequestValidationError([{**error, "ctx": {"error": exc.msg}}], body=exc.doc) from exc


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose body FastAPI reads through `parse_json` (FastAPI's documented custom-request hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
