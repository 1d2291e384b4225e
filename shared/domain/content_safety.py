"""Content safety (Azure AI Content Safety's model): a deployment's policy (severity thresholds per harm category,
custom blocklists), the classifier port, the built-in blocklist classifier, and the verdict in Azure's shapes.

A text gets a severity per category (safe < low < medium < high) from the deployment's classifier, and the ids of
the blocklists it matches. It is filtered when a category reaches its threshold or a blocklist matches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Category(StrEnum):
    HATE = "hate"
    SEXUAL = "sexual"
    VIOLENCE = "violence"
    SELF_HARM = "self_harm"


class Severity(StrEnum):
    SAFE = "safe"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.SAFE: 0, Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3}
# A threshold is the lowest severity that is filtered (Azure's "low" filters low, medium and high); "off" only
# annotates. Azure's default is medium.
THRESHOLDS = ("low", "medium", "high", "off")
BlocklistName = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Blocklist(_Strict):
    """Terms (whole words, any case) and regular expressions (Python syntax, any case); `name` is its id in the
    annotations. A regex that does not compile is refused when the config loads."""

    name: str = BlocklistName
    terms: tuple[str, ...] = ()
    regexes: tuple[str, ...] = ()

    @field_validator("terms")
    @classmethod
    def _non_empty(cls, terms: tuple[str, ...]) -> tuple[str, ...]:
        for i, term in enumerate(terms):
            if not term.strip():
                raise ValueError(f"item {i}: a term must not be blank")
        return terms

    @field_validator("regexes")
    @classmethod
    def _compiles(cls, regexes: tuple[str, ...]) -> tuple[str, ...]:
        for i, pattern in enumerate(regexes):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"item {i}, {pattern!r}, is not a valid regular expression: {exc}") from None
            if re.fullmatch(pattern, "") is not None:
                raise ValueError(f"item {i}, {pattern!r}, matches the empty text (it would filter everything)")
        return regexes

    def matches(self, text: str) -> bool:
        return any(p.search(text) for p in _compiled(self))


def _compiled(blocklist: Blocklist) -> list[re.Pattern[str]]:
    cached = _PATTERNS.get(blocklist)
    if cached is None:
        terms = [rf"(?<!\w){re.escape(t.strip())}(?!\w)" for t in blocklist.terms]
        cached = [re.compile(p, re.IGNORECASE) for p in (*terms, *blocklist.regexes)]
        _PATTERNS[blocklist] = cached
    return cached


_PATTERNS: dict[Blocklist, list[re.Pattern[str]]] = {}


class ContentSafetyPolicy(_Strict):
    """A deployment's `[deployments.content_safety]`: off unless the table is there (and `enabled`)."""

    enabled: bool = True
    thresholds: dict[Category, str] = Field(default_factory=dict)  # category → low/medium/high/off; medium
    classifier: str | None = None  # a deployment of kind "text-classifier"; without: blocklists only
    blocklists: tuple[Blocklist, ...] = ()

    @field_validator("thresholds")
    @classmethod
    def _known(cls, thresholds: dict[Category, str]) -> dict[Category, str]:
        for category, value in thresholds.items():
            if value not in THRESHOLDS:
                raise ValueError(f"{category}: {value!r} is not a threshold; use one of {', '.join(THRESHOLDS)}")
        return thresholds

    def filters(self, category: Category, severity: Severity) -> bool:
        threshold = self.thresholds.get(category, "medium")
        return threshold != "off" and severity.rank >= Severity(threshold).rank


Severities = dict[Category, Severity]


class TextClassifier(Protocol):
    """The classifier port: a severity per category for each text (a category it doesn't rate is safe)."""

    def classify(self, texts: Sequence[str]) -> list[Severities]: ...


@dataclass(frozen=True)
class FilterResult:
    """What screening one text (a prompt, or a completion so far) found, in Azure's annotation shape."""

    severities: Severities = field(default_factory=dict)
    filtered_categories: frozenset[Category] = frozenset()
    blocklists: tuple[str, ...] = ()  # the ids of the blocklists it matched
    blocklist_ids: tuple[str, ...] = ()  # every blocklist screened

    @property
    def filtered(self) -> bool:
        return bool(self.filtered_categories or self.blocklists)

    def annotation(self) -> dict[str, Any]:
        """`content_filter_results` (and the inner error's `content_filter_result`)."""
        body: dict[str, Any] = {
            c.value: {
                "filtered": c in self.filtered_categories,
                "severity": self.severities.get(c, Severity.SAFE).value,
            }
            for c in Category
        }
        if self.blocklist_ids:
            details = [{"filtered": True, "id": name} for name in self.blocklists]
            body["custom_blocklists"] = {"filtered": bool(self.blocklists), "details": details}
        return body

    def describe(self) -> str:
        reasons = [f"{c.value} ({self.severities[c].value})" for c in Category if c in self.filtered_categories]
        reasons += [f"blocklist {name!r}" for name in self.blocklists]
        return ", ".join(reasons)


class TextScreen(Protocol):
    """Screens text against one request's policy (its deployment's, with its tenant's blocklists)."""

    def screen(self, texts: Sequence[str]) -> FilterResult: ...


class Screen:
    """A policy with its classifier: every text classified, the worst severity per category kept."""

    def __init__(
        self, policy: ContentSafetyPolicy, blocklists: Sequence[Blocklist], classifier: TextClassifier | None
    ) -> None:
        self.policy = policy
        self.blocklists = tuple(blocklists)
        self.classifier = classifier

    def screen(self, texts: Sequence[str]) -> FilterResult:
        texts = [t for t in texts if t]
        worst: Severities = dict.fromkeys(Category, Severity.SAFE)
        if self.classifier is not None and texts:
            for rated in self.classifier.classify(texts):
                for category, severity in rated.items():
                    if severity.rank > worst[category].rank:
                        worst[category] = severity
        hits = tuple(b.name for b in self.blocklists if any(b.matches(t) for t in texts))
        filtered = frozenset(c for c, s in worst.items() if self.policy.filters(c, s))
        return FilterResult(worst, filtered, hits, tuple(b.name for b in self.blocklists))


def prompt_filter_results(result: FilterResult) -> list[dict[str, Any]]:
    """The response's `prompt_filter_results`: one prompt, index 0."""
    return [{"prompt_index": 0, "content_filter_results": result.annotation()}]
