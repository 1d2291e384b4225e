"""The generation loop over a scripted stand-in for an onnxruntime-genai generator: stop sequences, EOS,
length, presence/frequency penalties."""

from __future__ import annotations

import numpy as np
import pytest

from shared.domain.errors import ModelError
from shared.runtimes.engines.genai import Generation, GenerationOptions, ModelLimits, _first_stop, _stop_prefix_length

EOS = 4
LIMITS = ModelLimits(context_length=64, eos_token_ids=(EOS, 2))


class ScriptedGenerator:
    """Yields the scripted tokens (one per step) and is done after `max_new` of them, like max_length."""

    def __init__(self, tokens: list[int], max_new: int, vocab: int = 8, fail_at: int | None = None) -> None:
        self.tokens, self.max_new, self.fail_at = tokens, max_new, fail_at
        self.step = 0
        self.logits = np.zeros((1, 1, vocab), dtype=np.float32)
        self.set_calls: list[np.ndarray] = []

    def is_done(self) -> bool:
        return self.step >= self.max_new

    def get_logits(self) -> np.ndarray:
        return self.logits

    def set_logits(self, logits: np.ndarray) -> None:
        self.set_calls.append(logits.copy())

    def generate_next_token(self) -> None:
        if self.step == self.fail_at:
            raise RuntimeError("boom")
        self.step += 1

    def get_next_tokens(self) -> np.ndarray:
        return np.array([self.tokens[self.step - 1]], dtype=np.int32)


class Pieces:
    """A tokenizer stream: token t decodes to TEXT[t]."""

    def __init__(self, text: dict[int, str]) -> None:
        self.text = text

    def decode(self, token: int) -> str:
        return self.text[token]


TEXT = {5: "Hel", 6: "lo ", 7: "wor", 8: "ld.", 9: "\n", 10: "\nEND", 11: "x"}


def run(tokens: list[int], max_new: int = 10, **options: object) -> tuple[str, Generation]:
    opts = GenerationOptions(max_new_tokens=max_new, **options)  # type: ignore[arg-type]
    generation = Generation(ScriptedGenerator(tokens, max_new, vocab=16), Pieces(TEXT), 3, opts, LIMITS)
    return "".join(generation), generation


def test_eos_stops_with_stop_and_is_not_counted() -> None:
    text, g = run([5, 6, 7, 8, EOS, 5])
    assert (text, g.finish_reason, g.completion_tokens, g.prompt_tokens) == ("Hello world.", "stop", 4, 3)


def test_the_token_limit_finishes_with_length() -> None:
    text, g = run([5, 6, 7, 8, 5, 6], max_new=3)
    assert (text, g.finish_reason, g.completion_tokens) == ("Hello wor", "length", 3)


def test_a_stop_sequence_across_tokens_is_cut_and_ends_generation() -> None:
    text, g = run([5, 6, 7, 8, 9, 5], stop=("lo wo",))
    assert (text, g.finish_reason, g.completion_tokens) == ("Hel", "stop", 3)


def test_text_that_might_start_a_stop_sequence_is_held_back_until_decided() -> None:
    g = Generation(
        ScriptedGenerator([5, 9, 11, 10], 10, vocab=16),
        Pieces(TEXT),
        3,
        GenerationOptions(max_new_tokens=10, stop=("\nEND",)),
        LIMITS,
    )
    # "\n" could start "\nEND": held back until "x" shows it doesn't; then "\nEND" ends it.
    assert list(g) == ["Hel", "", "\nx", ""]
    assert g.finish_reason == "stop" and g.completion_tokens == 4


def test_held_back_text_is_released_when_generation_ends_otherwise() -> None:
    text, g = run([5, 9], max_new=2, stop=("\nEND",))
    assert (text, g.finish_reason) == ("Hel\n", "length")


def test_the_earliest_stop_sequence_wins() -> None:
    assert _first_stop("abcdef", ["de", "bc"]) == 1
    assert _first_stop("abc", ["x"]) is None
    assert _stop_prefix_length("hello wo", ["world", "o w"]) == 2
    assert _stop_prefix_length("hello", ["xyz"]) == 0


def test_presence_and_frequency_penalties_follow_openai() -> None:
    opts = GenerationOptions(max_new_tokens=4, presence_penalty=0.5, frequency_penalty=0.25)
    scripted = ScriptedGenerator([5, 5, 6, EOS], 4, vocab=16)
    list(Generation(scripted, Pieces(TEXT), 3, opts, LIMITS))
    first, second, third, fourth = (calls[0, 0] for calls in scripted.set_calls)
    assert not first.any()  # nothing generated yet
    assert second[5] == pytest.approx(-0.75) and second[6] == 0
    assert third[5] == pytest.approx(-1.0) and third[6] == 0
    assert fourth[5] == pytest.approx(-1.0) and fourth[6] == pytest.approx(-0.75)


def test_no_penalty_means_no_logits_round_trip() -> None:
    scripted = ScriptedGenerator([5, 6], 2)
    list(Generation(scripted, Pieces(TEXT), 3, GenerationOptions(max_new_tokens=2), LIMITS))
    assert scripted.set_calls == []


def test_a_failing_step_is_a_model_error_with_the_tokens_so_far_counted() -> None:
    g = Generation(
        ScriptedGenerator([5, 6, 7], 5, fail_at=2), Pieces(TEXT), 3, GenerationOptions(max_new_tokens=5), LIMITS
    )
    with pytest.raises(ModelError, match="boom"):
        list(g)
    assert g.completion_tokens == 2
