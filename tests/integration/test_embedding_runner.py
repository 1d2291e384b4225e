"""The ONNX Runtime embedding runner on the real all-MiniLM-L6-v2 int8 model."""

import numpy as np
import pytest
from tokenizers import Encoding, Tokenizer

from shared.adapters.memory.blobs import MemoryBlobStore
from shared.domain.config import Deployment
from shared.domain.errors import InvalidInput
from shared.domain.jobs import Job, JobStatus
from shared.runtimes.base import Edge, Work
from shared.runtimes.embeddings import KIND, EmbeddingsRuntime, check
from shared.runtimes.engines.onnx_embeddings import Embedding, EmbeddingRunner
from shared.schemas.embeddings import EmbeddingsRequest
from shared.schemas.usage import Meter
from tests.conftest import MODEL_DIR
from tests.unit.fakes import unit_settings


@pytest.fixture(scope="module")
def runner() -> EmbeddingRunner:
    r = EmbeddingRunner(MODEL_DIR, max_tokens=256, intra_op_threads=1, max_batch_size=4)
    r.load()
    return r


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_vectors_have_384_dimensions_and_unit_length(runner: EmbeddingRunner) -> None:
    (e,) = runner.predict(["The quick brown fox jumps over the lazy dog."])
    assert e.vector.shape == (384,)
    assert abs(float(np.linalg.norm(e.vector)) - 1.0) < 1e-5


def test_paraphrases_score_higher_than_unrelated_sentences(runner: EmbeddingRunner) -> None:
    a, b, c = runner.predict(
        ["How do I reset my password?", "I forgot my password and need to change it.", "The tide comes in at noon."]
    )
    assert cosine(a.vector, b.vector) > cosine(a.vector, c.vector) + 0.3


def test_batching_and_padding_do_not_change_a_vector(runner: EmbeddingRunner) -> None:
    texts = ["short", "a much longer sentence " * 10, "medium length text here", "x", "another one"]
    alone = [runner.predict([t])[0].vector for t in texts]
    together = [e.vector for e in runner.predict(texts)]  # 5 inputs, batches of 4, sorted by length
    for x, y in zip(alone, together, strict=True):
        assert cosine(x, y) > 0.9999


def test_token_counts_come_from_the_real_tokenizer_and_truncate_at_256(runner: EmbeddingRunner) -> None:
    reference = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()
    texts = ["Hello, world!", "tokenization of unusual words: antidisestablishmentarianism"]
    counts = [e.tokens for e in runner.predict(texts)]
    assert counts == [len(reference.encode(t).ids) for t in texts]  # [CLS] and [SEP] included
    (long,) = runner.predict(["word " * 1000])
    assert long.tokens == 256


def test_the_shipped_fixed_128_padding_is_overridden(runner: EmbeddingRunner) -> None:
    # With the file's own settings every input would be 128 tokens wide; a batch pads to its longest input, so
    # a 3-word input (5 tokens with [CLS] and [SEP]) beside a 1-word one makes a batch 5 tokens wide.
    feeds, mask = runner._preprocess(runner.tokenize(["three words here", "x"]))
    assert feeds["input_ids"].shape == (2, 5) and mask.sum(axis=1).tolist() == [5, 3]


def test_a_batch_of_mixed_lengths_runs_as_runs_of_similar_lengths(runner: EmbeddingRunner) -> None:
    # Padding a 3-token input to a 200-token neighbour's width would cost ~66x its own run: they run apart.
    widths: list[int] = []
    run = runner._run

    def spy(encodings: list[Encoding]) -> list[Embedding]:
        widths.append(max(len(e.ids) for e in encodings))
        return run(encodings)

    runner._run = spy  # type: ignore[method-assign]
    try:
        out = runner.predict(["word " * 198, "x", "word " * 199, "y"])
    finally:
        del runner._run
    assert sorted(widths) == [3, 201] and [e.tokens for e in out] == [200, 3, 201, 3]


def test_token_arrays_run_as_given_beside_texts(runner: EmbeddingRunner) -> None:
    texts = ["a short one", "a rather longer sentence about nothing much"]
    first, second = runner.tokenize(texts)
    bare = first.ids[1:-1]  # no [CLS]/[SEP]: run (and counted) as given, not as the text
    tokens = runner.encode([texts[0], second.ids, bare])
    assert [t.ids for t in tokens] == [first.ids, second.ids, bare]
    a, b, c = runner.embed(tokens)
    x, y = runner.predict(texts)
    assert np.allclose(a.vector, x.vector, atol=1e-6) and np.allclose(b.vector, y.vector, atol=1e-6)
    assert c.tokens == len(bare) and cosine(c.vector, x.vector) < 0.9999


def test_the_worker_checks_token_ids_against_the_models_vocabulary(runner: EmbeddingRunner) -> None:
    deployment = Deployment(name="d", kind="embeddings", model_name="m", model={"source": "x", "files": {}})
    request = EmbeddingsRequest(input=[101, runner.vocab_size, 102])
    settings = unit_settings()
    assert check(request, deployment, Edge("error", settings))["input"]  # an edge without the tokenizer can't tell
    with pytest.raises(InvalidInput, match="outside model 'd' vocabulary"):
        check(request, deployment, Edge("error", settings, lambda: runner.vocab_size))  # as `execute` checks
    runtime = EmbeddingsRuntime(runner, max_batch_size=4, max_wait_s=0)
    work = Work(Job.new("j", "acme", "d").to(JobStatus.RUNNING), deployment, settings, MemoryBlobStore(), bool)
    try:
        with pytest.raises(InvalidInput, match="outside model 'd' vocabulary"):
            KIND.execute(work, {"input": [[101, 102], [101, runner.vocab_size, 102]]}, runtime)
        assert KIND.execute(work, {"input": [[101, 7, 102]]}, runtime).usage == {Meter.INPUT_TOKENS: 3}
    finally:
        runtime.close()
    assert KIND.estimate(deployment, {"input": [[101, 7, 102], [101, 102]]}) == 5  # billed as given
    assert KIND.estimate(deployment, {"input": [101, 7, 102]}) == 3
