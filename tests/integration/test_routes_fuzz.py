"""Property: no request gets a 5xx, on any route the HTTP app serves. Hypothesis generates the requests: JSON of
any shape (lone surrogates in keys and values, NaN and Infinity, nesting from 1 to 1,200 levels, repeated keys,
non-object tops), bytes that aren't JSON, odd headers and query strings, job ids of any text. A refusal is a 4xx
in one of the API's two error shapes. Bounded and derandomized: the same examples on every run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute

from functions.http.app import app
from shared.bootstrap import Inferq
from tests.conftest import ADMIN_KEY, KEYS, app_client
from tests.integration.test_hostile_input import assert_envelope

# Drawn one by one, not as `st.text(alphabet)`: that merges the alphabets into one, where surrogates are rare.
CHARS = st.characters(exclude_categories=()) | st.characters(categories=["Cs"]) | st.sampled_from(["\x00", '"', "é"])
TEXT = st.lists(CHARS, max_size=8).map("".join)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT  # floats: NaN and ±Infinity included
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)


def nest(levels: int, key: str, leaf: Any, shapes: str) -> Any:
    for level in range(levels):
        leaf = {key: leaf} if shapes[level % len(shapes)] == "d" else [leaf]
    return leaf


LEVELS = st.integers(1, 1_200) | st.sampled_from([127, 128, 129, 300, 450, 700, 999])  # the bound; past the stack
DEEP = st.builds(nest, LEVELS, TEXT, SCALARS, st.sampled_from(["d", "l", "dl", "ddl"]))
VALUES = JSON | DEEP
ASCII = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12)  # what a header can carry
QUERY_TEXT = st.text(max_size=12) | st.dates().map(str) | st.datetimes().map(lambda d: d.isoformat())


@dataclass(frozen=True)
class Post:
    """An inference route: a valid body to start from, its known fields, and fields held fixed. No worker runs in
    this test: requests ask for an async answer, and `stream` stays off (a stream would wait its whole timeout for
    a first token that never comes)."""

    valid: dict[str, Any]
    fields: tuple[str, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    query: tuple[str, ...] = ()


PIXEL_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
CHAT_FIELDS = ("model", "temperature", "top_p", "max_tokens", "stop", "seed", "n", "user", "stream_options")
POSTS = {
    "/embeddings": Post({"input": "x"}, ("input", "model", "dimensions", "encoding_format", "input_type", "user")),
    "/chat/completions": Post(
        {"model": "tiny-random-chat", "messages": [{"role": "user", "content": "hi"}]},
        ("messages", *CHAT_FIELDS),
        {"stream": False},
    ),
    "/completions": Post({"model": "tiny-random-chat", "prompt": "hi"}, ("prompt", *CHAT_FIELDS), {"stream": False}),
    "/images/embeddings": Post(
        {"model": "tiny-random-clip", "input": [{"image": PIXEL_PNG, "text": "red"}]},
        ("input", "model", "dimensions", "encoding_format", "input_type"),
    ),
    "/score": Post({"model": "linear-scorer", "data": [[1, 2, 3]]}, ("model", "data"), query=("model",)),
    "/score/{endpoint}": Post({"data": [[1, 2, 3]]}, ("model", "data")),
}
# Azure OpenAI's routes: the path names the model, `api-version` is read.
AZURE = "/openai/deployments/{name}"
POSTS |= {
    f"{AZURE}{path}": Post(POSTS[path].valid, POSTS[path].fields, POSTS[path].fixed, ("api-version",))
    for path in ("/embeddings", "/chat/completions", "/completions")
}
# Every other route: the query parameters it reads (any others are sent too).
GETS: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/health"): (),
    ("GET", "/health/ready"): (),
    ("GET", "/info"): ("model",),
    ("GET", "/models"): (),
    ("GET", "/models/{model_id}"): (),
    ("GET", "/usage"): ("from", "to", "granularity", "tenant"),
    ("GET", "/usage/metering"): ("from", "to", "tenant"),
    ("GET", "/deployments"): ("from", "to"),
    ("GET", "/openapi.json"): (),
    ("GET", "/docs"): (),
    ("GET", "/jobs/{job_id}"): (),
    ("DELETE", "/jobs/{job_id}"): (),
    ("GET", "/dashboard"): (),
    ("GET", "/dashboard/{asset:path}"): (),
    ("GET", "/dashboard/summary"): ("tenant",),
}
NATIVE = {("POST", path) for path in POSTS} | set(GETS)
V1 = "/v1"  # every route again under /v1 (an OpenAI `base_url` ending in /v1): the same handlers
ROUTES = sorted(NATIVE | {(method, V1 + path) for method, path in NATIVE})
# Path parameters: names the app knows, in any case, and any text.
NAMES = st.sampled_from(["all-MiniLM-L6-v2", "TINY-random-chat", "linear-scorer", "nope"]) | TEXT
PARAMS = {
    "{job_id}": TEXT | st.just("job_" + "0" * 32),
    "{name}": NAMES,
    "{model_id}": NAMES,
    "{endpoint}": st.sampled_from(["linear-scorer", "LINEAR-SCORER", "all-MiniLM-L6-v2", "x"]) | TEXT,
    "{asset:path}": st.sampled_from(["dashboard.js", "vendor/chart.umd.min.js", "../index.html", "vendor/"]) | TEXT,
}


def served(routes: Iterable[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps an included router whole
        if included is not None:
            found |= served(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        else:
            assert isinstance(route, APIRoute), route
            found |= {(method, prefix + route.path) for method in route.methods}
    return found


def test_the_fuzzed_routes_are_every_route_the_app_serves() -> None:
    assert set(ROUTES) == served(app.routes)


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None = None


def encode(text: str, escaped: bool) -> bytes:
    """JSON escapes for what UTF-8 can't carry, or the raw code points (surrogates as CESU-8: not UTF-8 at all)."""
    return text.encode("ascii" if escaped else "utf-8", "surrogatepass")


def dumps(value: Any, escaped: bool) -> str:
    return json.dumps(value, ensure_ascii=escaped)  # NaN and Infinity as their JavaScript literals


@st.composite
def bodies(draw: st.DrawFn, post: Post) -> bytes:
    escaped = draw(st.booleans())
    shape = draw(st.sampled_from(["extra", "extra", "object", "object", "any", "bytes"]))
    if shape == "bytes":
        return draw(st.binary(max_size=40) | st.just(b'{"n": ' + b"9" * 4_400 + b"}"))
    if shape == "any":
        return encode(dumps(draw(VALUES), escaped), escaped)
    if shape == "extra":  # the valid body and one unknown parameter: what the 422 echoes, keys included
        kept, added = list(post.valid.items()), [(draw(TEXT), draw(VALUES))]
    else:  # from the valid body: most fields kept (to reach past them), some changed or repeated, others added
        kept = [(k, v) for k, v in post.valid.items() if draw(st.integers(0, 4))]
        added = draw(st.lists(st.tuples(st.sampled_from(post.fields) | TEXT, VALUES), max_size=3))
    pairs = [(k, v) for k, v in kept + added if k not in post.fixed] + list(post.fixed.items())
    return encode("{" + ", ".join(f"{dumps(k, escaped)}: {dumps(v, escaped)}" for k, v in pairs) + "}", escaped)


def query(names: Iterable[str]) -> st.SearchStrategy[str]:
    value = QUERY_TEXT.map(lambda v: quote(v, safe="")) | st.binary(max_size=6).map(quote_from_bytes)
    pair = st.tuples(st.sampled_from(list(names)) | ASCII if names else ASCII, value)
    return st.lists(pair, max_size=3).map(lambda pairs: "&".join(f"{quote(k)}={v}" for k, v in pairs))


def headers(keys: Iterable[str | None]) -> st.SearchStrategy[dict[str, str]]:
    options: dict[str, st.SearchStrategy[str]] = {
        "extra-parameters": st.sampled_from(["error", "drop", "pass-through", "drop", "pass-through", "maybe"]),
        "azureml-model-deployment": st.sampled_from(["all-MiniLM-L6-v2", "tiny-random-chat", "linear-scorer", "x"]),
        "content-type": st.sampled_from(["application/x-www-form-urlencoded", "text/plain", "application/x+json"]),
        "idempotency-key": ASCII,
        "accept": st.sampled_from(["text/csv", "*/*"]) | ASCII,
    }
    key = st.sampled_from(list(keys))
    base = key.map(lambda k: {"api-key": k} if k else {})
    extras = st.fixed_dictionaries({}, optional=options)
    defaults = {"Prefer": "respond-async", "content-type": "application/json"}
    return st.builds(lambda a, b: {**defaults, **a, **b}, base, extras)


def calls(method: str, route: str) -> st.SearchStrategy[Call]:
    keys = [KEYS["acme"]] * 9 + [ADMIN_KEY, None, "wrong-key"]
    path = route.removeprefix(V1)
    url = filled(route)
    if method == "POST":
        post = POSTS[path]
        return st.builds(
            lambda u, q, h, b: Call(method, f"{u}?{q}", h, b), url, query(post.query), headers(keys), bodies(post)
        )
    if "{job_id}" in path:
        return st.builds(lambda u, h: Call(method, u, h), url, headers(keys))
    return st.builds(lambda u, q, h: Call(method, f"{u}?{q}", h), url, query(GETS[method, path]), headers(keys))


def filled(route: str) -> st.SearchStrategy[str]:
    """The route's URL, each path parameter drawn (percent-encoded; surrogates as CESU-8)."""
    url = st.just(route)
    for param, values in PARAMS.items():
        if param in route:
            encoded = values.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe=""))
            url = st.builds(lambda u, v, p=param: u.replace(p, v), url, encoded)
    return url


@pytest.fixture
def client(service: Inferq) -> Iterator[TestClient]:
    with app_client(service) as c:
        yield c


def examples(method: str, path: str) -> Callable[[Any], Any]:
    count = 200 if method == "POST" else 40
    return settings(
        max_examples=count // 5 if path.startswith(V1) else count,  # an alias: the same handlers, fewer examples
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_request_gets_a_5xx(client: TestClient, method: str, path: str) -> None:
    @examples(method, path)
    @given(call=calls(method, path))
    def no_5xx(call: Call) -> None:
        r = client.request(call.method, call.url, headers=call.headers, content=call.content)
        if r.status_code >= 400:
            assert_envelope(r)

    no_5xx()
