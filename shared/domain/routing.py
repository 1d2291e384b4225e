"""Routing a request: `model` names an endpoint (when absent, the first one of the route's kind); the
`azureml-model-deployment` header picks a deployment behind it, or else the traffic weights do; mirrored
deployments get a copy.

The random draws come from an injected `random.Random`, so tests can seed them. A request that names its
deployment by header is not mirrored (as on Azure ML: it is a test of that deployment, not live traffic).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from shared.domain.config import AppConfig, Deployment, Endpoint, RunnerKind
from shared.domain.errors import NotFound


@dataclass(frozen=True)
class Route:
    endpoint: Endpoint
    deployment: Deployment
    mirrors: tuple[Deployment, ...] = ()
    pinned: bool = False  # the header named the deployment


class Router:
    def __init__(self, config: AppConfig, rng: random.Random | None = None) -> None:
        self.endpoints = config.all_endpoints()
        self._by_name = {e.name.lower(): e for e in self.endpoints}
        self._deployments = {d.name.lower(): d for d in config.deployments}
        self._owner = {n.lower(): e for e in self.endpoints for n in e.deployment_names}
        self._rng = rng or random.Random()
        self._lock = threading.Lock()  # one draw sequence, whatever the threads: a seeded run is reproducible

    @property
    def default(self) -> Endpoint:
        return self.endpoints[0]

    def endpoint(self, name: str | None) -> Endpoint:
        if name is None:
            return self.default
        found = self._by_name.get(name.lower())
        if found is None:
            known = ", ".join(e.name for e in self.endpoints)
            raise NotFound(f"Unknown model {name!r}. Known: {known}.")
        return found

    def endpoint_of(self, deployment: str) -> str:
        """The endpoint a deployment is behind; its own name once it left the config."""
        owner = self._owner.get(deployment.lower())
        return owner.name if owner is not None else deployment

    def route(self, model: str | None, header: str | None, kind: RunnerKind | None = None) -> Route:
        endpoint = self._default_of(kind) if model is None and kind is not None else self.endpoint(model)
        self._check_kind(endpoint, kind)
        if header:
            return Route(endpoint, self._pinned(endpoint, header), pinned=True)
        with self._lock:
            draw = self._rng.randrange(100)
            mirror_draws = [self._rng.randrange(100) for _ in endpoint.mirror]
        mirrors = tuple(
            self._deployments[name.lower()]
            for (name, share), mirror_draw in zip(endpoint.mirror.items(), mirror_draws, strict=True)
            if mirror_draw < share
        )
        return Route(endpoint, self._pick(endpoint, draw), mirrors)

    def route_named(self, name: str, header: str | None, kind: RunnerKind) -> Route:
        """A route for the name in an Azure OpenAI path (`/openai/deployments/{name}/...`), which names an endpoint
        (the header may then pick its deployment) or a deployment behind one (pinned, as by the header)."""
        owner = self._owner.get(name.lower())
        if name.lower() not in self._by_name and owner is not None:
            return self.route(owner.name, name, kind)
        return self.route(name, header, kind)

    def describe(self, model: str | None, header: str | None) -> Deployment:
        """The deployment `/info` describes: the header's, or the one with the most traffic."""
        endpoint = self.endpoint(model)
        return self._pinned(endpoint, header) if header else self._deployments[endpoint.primary().lower()]

    def direct(self, deployment: Deployment) -> Route:
        """A route straight to a deployment (what the header does), for producers that name one."""
        owner = self._owner.get(deployment.name.lower())
        endpoint = owner or Endpoint(name=deployment.name, traffic={deployment.name: 100})
        return Route(endpoint, deployment, pinned=True)

    def _pick(self, endpoint: Endpoint, draw: int) -> Deployment:
        for name, weight in endpoint.traffic.items():
            if draw < weight:
                return self._deployments[name.lower()]
            draw -= weight
        raise AssertionError(f"endpoint {endpoint.name}: traffic weights do not sum to 100")  # refused at load

    def _pinned(self, endpoint: Endpoint, header: str) -> Deployment:
        for name in endpoint.deployment_names:
            if name.lower() == header.lower():
                return self._deployments[name.lower()]
        raise NotFound(
            f"Deployment {header!r} is not behind endpoint {endpoint.name!r} "
            f"(its deployments: {', '.join(endpoint.deployment_names)})."
        )

    def _kind(self, endpoint: Endpoint) -> RunnerKind:
        return self._deployments[endpoint.primary().lower()].kind  # an endpoint's deployments share a kind

    def _default_of(self, kind: RunnerKind) -> Endpoint:
        """The first endpoint of the route's kind: a request without `model` means the one model of its kind."""
        found = next((e for e in self.endpoints if self._kind(e) is kind), None)
        if found is None:
            raise NotFound(f"No model of type {kind.model_type} is deployed here.")
        return found

    def _check_kind(self, endpoint: Endpoint, kind: RunnerKind | None) -> None:
        """A modality the model doesn't serve is a 404, as the Azure AI Model Inference reference answers."""
        actual = self._kind(endpoint)
        if kind is not None and not actual.serves(kind):
            raise NotFound(
                f"Model '{endpoint.name}' is of type {actual.model_type}; this route serves {kind.model_type} models."
            )
