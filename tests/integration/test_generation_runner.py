"""The generation runner and the edge's prompt counter on the tiny random-weight model (config/demo/tiny-chat)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.runtimes.engines.genai import GenerationOptions, GenerationRunner
from shared.runtimes.engines.prompts import PromptCounter
from tests.conftest import CHAT_MODEL_DIR, ROOT


@pytest.fixture(scope="module")
def runner() -> GenerationRunner:
    r = GenerationRunner(CHAT_MODEL_DIR, intra_op_threads=2)
    r.load()
    return r


def generate(runner: GenerationRunner, text: str, **options: object) -> tuple[str, int, str | None]:
    ids = runner.encode_chat([{"role": "user", "content": text}])
    generation = runner.generate(ids, GenerationOptions(**{"max_new_tokens": 24, **options}))  # type: ignore[arg-type]
    try:
        out = "".join(generation)
    finally:
        generation.close()
    return out, generation.completion_tokens, generation.finish_reason


MESSAGES = [
    [{"role": "user", "content": "Hello there"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi! How are you today?"}],
    [
        {"role": "user", "content": "Write a poem about the sea."},
        {"role": "assistant", "content": "Waves, waves and salt."},
        {"role": "user", "content": "Longer, with émojis 🌊 and\nnewlines."},
    ],
]


@pytest.mark.parametrize("messages", MESSAGES)
def test_the_edge_counts_exactly_the_tokens_the_worker_sees(
    runner: GenerationRunner, messages: list[dict[str, str]]
) -> None:
    counter = PromptCounter(CHAT_MODEL_DIR)
    assert counter.context_length == runner.context_length == 512
    assert counter.count_chat(messages) == len(runner.encode_chat(messages))
    text = messages[-1]["content"]
    assert counter.count_text(text) == len(runner.encode_text(text))


def test_the_chat_template_comes_from_the_model_folder(runner: GenerationRunner) -> None:
    template = json.loads((CHAT_MODEL_DIR / "tokenizer_config.json").read_text())["chat_template"]
    assert "<|im_start|>" in template
    rendered = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"  # ChatML, with the generation prompt
    assert list(runner.encode_chat([{"role": "user", "content": "hi"}])) == list(runner.encode_text(rendered))


def test_greedy_decoding_is_deterministic_and_limited_by_max_new_tokens(runner: GenerationRunner) -> None:
    first = generate(runner, "Tell me a story", temperature=0, max_new_tokens=10)
    assert first == generate(runner, "Tell me a story", temperature=0, max_new_tokens=10)
    text, tokens, finish = first
    assert text and tokens == 10 and finish == "length"


def test_a_seed_makes_sampling_repeatable(runner: GenerationRunner) -> None:
    a = generate(runner, "Tell me a story", temperature=0.9, top_p=0.95, seed=7)
    assert a == generate(runner, "Tell me a story", temperature=0.9, top_p=0.95, seed=7)
    others = {generate(runner, "Tell me a story", temperature=0.9, top_p=0.95, seed=s)[0] for s in range(8, 12)}
    assert others - {a[0]}  # other seeds give other texts


def test_a_stop_sequence_cuts_the_real_output(runner: GenerationRunner) -> None:
    text, _, _ = generate(runner, "Tell me a story", temperature=0, max_new_tokens=40)
    stop = text[5:8]
    cut, tokens, finish = generate(runner, "Tell me a story", temperature=0, max_new_tokens=40, stop=(stop,))
    assert cut == text[: text.index(stop)] and finish == "stop" and tokens < 40


def test_penalties_change_a_repetitive_greedy_text(runner: GenerationRunner) -> None:
    plain = generate(runner, "hi", temperature=0, max_new_tokens=60)[0]
    penalised = generate(runner, "hi", temperature=0, max_new_tokens=60, frequency_penalty=1.5)[0]
    assert plain != penalised


def test_concurrent_generations_do_not_share_a_generator(runner: GenerationRunner) -> None:
    prompts = ["one two three", "the sea is wide", "hello", "numbers 1 2 3"] * 2
    expected = [generate(runner, p, temperature=0.8, seed=i) for i, p in enumerate(prompts)]
    with ThreadPoolExecutor(len(prompts)) as pool:
        futures = [pool.submit(generate, runner, p, temperature=0.8, seed=i) for i, p in enumerate(prompts)]
        assert [f.result() for f in futures] == expected


def test_the_http_edge_counts_prompt_tokens_without_loading_genai_or_onnxruntime() -> None:
    code = (
        "import sys, function_app\n"
        "from shared.runtimes.engines.prompts import PromptCounter\n"
        f"c = PromptCounter(__import__('pathlib').Path({str(CHAT_MODEL_DIR)!r}))\n"
        "assert c.count_chat([{'role': 'user', 'content': 'hi'}]) > 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'onnxruntime_genai')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("top_k", [512, 513, 2**31, 10**20])
def test_a_top_k_beyond_the_vocabulary_samples_from_all_of_it(runner: GenerationRunner, top_k: int) -> None:
    # The edge takes any top_k ≥ 1 (OpenAI-style): past the vocabulary it means "every token", not a failed job.
    _, tokens, _ = generate(runner, "Hi", max_new_tokens=4, temperature=1.0, top_k=top_k, seed=1)
    assert tokens > 0
