"""Content safety as the gateway and the worker use it: the screen of one request (its deployment's policy and
classifier, with its tenant's blocklists), or None where the deployment has content safety off."""

from __future__ import annotations

from typing import Any, cast

from shared.domain.config import AppConfig, Deployment
from shared.domain.content_safety import FilterResult, Screen, TextClassifier
from shared.runtimes import chat
from shared.runtimes.registry import RuntimeRegistry


class ContentSafety:
    """Only chat deployments have content safety (the config refuses it elsewhere): their payloads are read here."""

    def __init__(self, config: AppConfig, registry: RuntimeRegistry) -> None:
        self.config = config
        self.registry = registry

    def screen(self, tenant: str, deployment: Deployment) -> Screen | None:
        policy = deployment.safety
        if policy is None:
            return None
        classifier = None
        if policy.classifier is not None:
            # The classifier deployment's runtime, loaded in this process on first use (the HTTP side too: a
            # prompt is rated before it is queued).
            runtime = self.registry.runtime(self.config.deployment(policy.classifier))
            classifier = cast(TextClassifier, runtime)
        tenants = [t for t in self.config.tenants if t.name == tenant]
        blocklists = (*policy.blocklists, *(b for t in tenants for b in t.blocklists))
        return Screen(policy, blocklists, classifier)

    def screen_prompt(self, tenant: str, deployment: Deployment, payload: dict[str, Any]) -> FilterResult | None:
        """What screening a checked payload's prompt found; None where content safety is off."""
        screen = self.screen(tenant, deployment)
        return screen.screen(chat.prompt_texts(payload)) if screen is not None else None

    @staticmethod
    def prompt_tokens(payload: dict[str, Any], counter: Any) -> int:
        """The prompt tokens a refused prompt bills, as the edge's tokenizer counts them (0 without one)."""
        return chat.prompt_tokens(payload, counter) if counter is not None else 0
