"""Content safety's config (every mistake refused at load, naming its field) and its screening logic: thresholds
per category, blocklists of whole-word terms and regexes, Azure's annotation shape."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from shared.domain.config import AppConfig, load_config
from shared.domain.content_safety import Blocklist, Category, ContentSafetyPolicy, Screen, Severities, Severity
from shared.domain.errors import ConfigError
from tests.conftest import APPENDED, write_config

SAFETY_AFTER_CHAT = '[[deployments]]\nname = "smollm2-135m-instruct"'  # tiny-random-chat's table ends here


def with_safety(tmp_path: Path, safety: str, tenants: str = "", after: str = "") -> Path:
    """The test config with `safety` as tiny-random-chat's content_safety table (the second deployment)."""
    path = write_config(tmp_path / "c.toml", extra=tenants, after=after)
    text = path.read_text()
    path.write_text(text.replace(SAFETY_AFTER_CHAT, f"{safety}\n\n{SAFETY_AFTER_CHAT}", 1))
    return path


CLASSIFIER = """
[[deployments]]
name = "clf"
kind = "text-classifier"
model_name = "clf"
labels = ["hate:high", "none"]
[deployments.model]
source = "config/demo/safety-classifier"
"""


def test_content_safety_is_off_by_default(config: AppConfig) -> None:
    assert all(d.safety is None for d in config.deployments)


def test_a_valid_policy_loads(tmp_path: Path) -> None:
    path = with_safety(
        tmp_path,
        '[deployments.content_safety]\nclassifier = "clf"\nthresholds = { hate = "low", self_harm = "off" }\n'
        '[[deployments.content_safety.blocklists]]\nname = "b"\nterms = ["x"]\nregexes = ["y+z"]\n',
        after=CLASSIFIER,
    )
    policy = load_config(path).deployment("tiny-random-chat").safety
    assert policy is not None and policy.classifier == "clf" and policy.blocklists[0].regexes == ("y+z",)


@pytest.mark.parametrize(
    ("safety", "tenants", "after", "field"),
    [
        (
            '[deployments.content_safety]\n[[deployments.content_safety.blocklists]]\nname = "b"\nregexes = ["(a"]',
            "",
            "",
            r"deployments\.1\.content_safety\.blocklists\.0\.regexes: .*'\(a'.* not a valid regular expression",
        ),
        (
            '[deployments.content_safety]\n[[deployments.content_safety.blocklists]]\nname = "b"\nregexes = ["a*"]',
            "",
            "",
            r"deployments\.1\.content_safety\.blocklists\.0\.regexes: .*matches the empty text",
        ),
        (
            "",
            '[[tenants]]\nname = "t"\n[[tenants.blocklists]]\nname = "b"\nregexes = ["[z"]\n',
            "",
            r"tenants\.2\.blocklists\.0\.regexes: .*not a valid regular expression",
        ),
        (
            '[deployments.content_safety]\nthresholds = { hate = "severe" }',
            "",
            "",
            r"deployments\.1\.content_safety\.thresholds: hate: 'severe' is not a threshold",
        ),
        (
            '[deployments.content_safety]\nthresholds = { spam = "low" }',
            "",
            "",
            r"deployments\.1\.content_safety\.thresholds\.spam\.\[key\]",
        ),
        (
            '[deployments.content_safety]\nclassifier = "all-MiniLM-L6-v2"',
            "",
            "",
            r"deployments\.1\.content_safety\.classifier: 'all-MiniLM-L6-v2' is not a deployment of kind "
            r"'text-classifier'",
        ),
        ('[deployments.content_safety]\nenabled = "maybe"', "", "", r"deployments\.1\.content_safety\.enabled"),
        ("", "", CLASSIFIER.replace('labels = ["hate:high", "none"]', ""), rf"deployments\.{APPENDED}: .*needs them"),
        ("", "", CLASSIFIER.replace('"hate:high"', '"hate:extreme"'), rf"deployments\.{APPENDED}\.labels\.0"),
    ],
)
def test_a_policy_mistake_is_refused_naming_its_field(
    tmp_path: Path, safety: str, tenants: str, after: str, field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(with_safety(tmp_path, safety, tenants, after))


def test_content_safety_on_an_embeddings_deployment_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml")
    text = path.read_text().replace(
        "[deployments.prices]", "[deployments.content_safety]\n\n[deployments.prices]", 1
    )  # the first deployment: embeddings
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"deployments\.0: .*`content_safety` is only for kind 'chat-completion'"):
        load_config(path)


class FakeClassifier:
    def __init__(self, ratings: dict[str, Severities]) -> None:
        self.ratings = ratings

    def classify(self, texts: Sequence[str]) -> list[Severities]:
        return [self.ratings.get(t, {}) for t in texts]


def test_each_category_filters_at_its_threshold_and_the_worst_text_counts() -> None:
    policy = ContentSafetyPolicy(thresholds={Category.VIOLENCE: "high", Category.SELF_HARM: "off"})
    classifier = FakeClassifier(
        {
            "a": {Category.HATE: Severity.LOW, Category.VIOLENCE: Severity.MEDIUM},
            "b": {Category.HATE: Severity.MEDIUM, Category.SELF_HARM: Severity.HIGH},
        }
    )
    screen = Screen(policy, [], classifier)
    assert not screen.screen(["a"]).filtered  # hate low < medium (the default), violence medium < high
    both = screen.screen(["a", "b"])
    assert both.filtered and both.filtered_categories == {Category.HATE}
    assert both.annotation() == {
        "hate": {"filtered": True, "severity": "medium"},
        "sexual": {"filtered": False, "severity": "safe"},
        "violence": {"filtered": False, "severity": "medium"},
        "self_harm": {"filtered": False, "severity": "high"},  # "off": annotated, never filtered
    }


def test_blocklists_match_whole_word_terms_and_regexes_in_any_case() -> None:
    lists = [Blocklist(name="words", terms=("Bad Thing",)), Blocklist(name="codes", regexes=(r"\bx-\d{3}\b",))]
    screen = Screen(ContentSafetyPolicy(), lists, None)
    assert screen.screen(["a BAD thing here"]).blocklists == ("words",)
    assert screen.screen(["a bad things", "badthing"]).blocklists == ()
    found = screen.screen(["code X-123", "bad thing"])
    assert found.filtered and found.annotation()["custom_blocklists"] == {
        "filtered": True,
        "details": [{"filtered": True, "id": "words"}, {"filtered": True, "id": "codes"}],
    }
    assert screen.screen(["fine"]).annotation()["custom_blocklists"] == {"filtered": False, "details": []}
