"""Routing by weight (seeded, so exact and repeatable), the header override, mirrors and the default endpoint."""

import math
import random
from collections import Counter
from pathlib import Path

import pytest

from shared.domain.config import AppConfig, RunnerKind, load_config
from shared.domain.errors import NotFound
from shared.domain.routing import Router
from tests.conftest import write_config
from tests.unit.test_endpoints_config import BLUE_GREEN, config_with

N = 1000
ENDPOINT = '[[endpoints]]\nname = "embed"\ntraffic = { "minilm-blue" = 90, "minilm-green" = 10 }\n'


def within_binomial(count: int, n: int, p: float, sigmas: float = 4) -> bool:
    """`count` successes of `n` at probability `p` is within `sigmas` standard deviations of n·p."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return load_config(config_with(tmp_path, ENDPOINT + 'mirror = { "minilm-shadow" = 30 }\n'))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_90_10_split_lands_within_a_binomial_tolerance_of_900_100(config: AppConfig, seed: int) -> None:
    router = Router(config, random.Random(seed))
    served = Counter(router.route("embed", None, RunnerKind.EMBEDDINGS).deployment.name for _ in range(N))
    assert set(served) == {"minilm-blue", "minilm-green"}
    assert served["minilm-blue"] + served["minilm-green"] == N
    assert within_binomial(served["minilm-green"], N, 0.10), served  # 100 ± 38


def test_the_same_seed_routes_the_same_way(config: AppConfig) -> None:
    def names(seed: int) -> list[str]:
        router = Router(config, random.Random(seed))
        return [router.route("EMBED", None).deployment.name for _ in range(200)]

    assert names(42) == names(42) and names(42) != names(43)


def test_a_mirror_share_copies_that_share_of_live_requests(config: AppConfig) -> None:
    router = Router(config, random.Random(7))
    routes = [router.route("embed", None) for _ in range(N)]
    mirrored = [r for r in routes if r.mirrors]
    assert all([d.name for d in r.mirrors] == ["minilm-shadow"] for r in mirrored)
    assert within_binomial(len(mirrored), N, 0.30), len(mirrored)
    assert all(r.deployment.name != "minilm-shadow" for r in routes)  # a mirror takes no live traffic


def test_the_header_reaches_the_named_deployment_every_time_and_is_not_mirrored(config: AppConfig) -> None:
    router = Router(config, random.Random(0))
    for header in ("minilm-green", "MINILM-GREEN", "minilm-blue", "minilm-shadow"):
        routes = [router.route("embed", header, RunnerKind.EMBEDDINGS) for _ in range(N)]
        assert {r.deployment.name for r in routes} == {header.lower()}
        assert not any(r.mirrors for r in routes) and all(r.pinned for r in routes)


def test_a_header_naming_a_deployment_not_behind_the_endpoint_is_404(config: AppConfig) -> None:
    router = Router(config)
    for header in ("all-MiniLM-L6-v2", "nope"):  # another endpoint's deployment is as unknown as a missing one
        with pytest.raises(NotFound, match=f"Deployment '{header}' is not behind endpoint 'embed'"):
            router.route("embed", header)
    with pytest.raises(NotFound, match="Unknown model 'minilm-blue'"):
        router.route("minilm-blue", None)  # a deployment behind an endpoint is not an endpoint itself


def test_model_names_the_endpoint_and_defaults_to_the_first(config: AppConfig) -> None:
    router = Router(config)
    default = router.route(None, None, RunnerKind.EMBEDDINGS)
    assert (default.endpoint.name, default.deployment.name) == ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
    with pytest.raises(NotFound, match="'embed' is of type embeddings; this route serves chat_completion models"):
        router.route("embed", None, RunnerKind.CHAT)  # a modality the model doesn't serve: 404, as the reference
    assert router.describe("embed", None).name == "minilm-blue"  # /info: the deployment with the most traffic
    assert router.describe("embed", "minilm-green").name == "minilm-green"
    assert router.endpoint_of("MINILM-shadow") == "embed" and router.endpoint_of("gone") == "gone"


def test_without_model_a_route_goes_to_the_first_endpoint_of_its_kind(tmp_path: Path) -> None:
    router = Router(load_config(write_config(tmp_path / "plain.toml")))  # the first endpoint serves embeddings
    assert router.route(None, None, RunnerKind.CHAT).deployment.name == "tiny-random-chat"
    assert router.route(None, None, RunnerKind.SCORE).deployment.name == "linear-scorer"
    assert router.route(None, None, RunnerKind.EMBEDDINGS).deployment.name == "all-MiniLM-L6-v2"
    full = load_config(write_config(tmp_path / "e.toml"))
    embedders = [d for d in full.deployments if d.kind is RunnerKind.EMBEDDINGS]
    only_embeddings = Router(full.model_copy(update={"deployments": embedders}))
    with pytest.raises(NotFound, match="No model of type chat_completion is deployed here"):
        only_embeddings.route(None, None, RunnerKind.CHAT)


def test_an_azure_openai_path_names_an_endpoint_or_a_deployment_behind_one(config: AppConfig) -> None:
    router = Router(config, random.Random(0))
    pinned = router.route_named("MINILM-green", None, RunnerKind.EMBEDDINGS)
    assert (pinned.endpoint.name, pinned.deployment.name, pinned.pinned) == ("embed", "minilm-green", True)
    weighted = {router.route_named("embed", None, RunnerKind.EMBEDDINGS).deployment.name for _ in range(200)}
    assert weighted == {"minilm-blue", "minilm-green"}
    assert router.route_named("embed", "minilm-green", RunnerKind.EMBEDDINGS).deployment.name == "minilm-green"
    with pytest.raises(NotFound, match="Unknown model 'nope'"):
        router.route_named("nope", None, RunnerKind.EMBEDDINGS)
    with pytest.raises(NotFound, match="is of type embeddings"):
        router.route_named("minilm-blue", None, RunnerKind.CHAT)


def test_without_endpoints_every_deployment_is_reached_by_its_own_name(tmp_path: Path) -> None:
    router = Router(load_config(write_config(tmp_path / "plain.toml")))
    for name in ("all-MiniLM-L6-v2", "tiny-random-chat", "linear-scorer"):
        route = router.route(name.upper(), None)
        assert (route.endpoint.name, route.deployment.name, route.mirrors) == (name, name, ())
        assert router.route(name, name).deployment.name == name  # the header may name it too
    assert [e.name for e in load_config(config_with(tmp_path, "", BLUE_GREEN)).all_endpoints()][-3:] == [
        "minilm-blue",
        "minilm-green",
        "minilm-shadow",
    ]
