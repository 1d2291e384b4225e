#!/usr/bin/env python3
"""Build the tiny content-safety classifier used by the demo config and the tests (config/demo/safety-classifier).

What it is
----------
A word-level text classifier whose weights are set by hand, not trained, so that known words rate known
categories and severities (TRIGGERS below) and every other word rates safe:

    input_ids [batch, tokens] ──Gather(embedding [vocab, 12])──▶ [batch, tokens, 12]
        ──ReduceMax over tokens──▶ [batch, 12] ──MatMul(identity) + bias──▶ Sigmoid ──▶ scores [batch, 12]

Output i is label LABELS[i] ("hate:low" ... "self_harm:high"). A trigger word's embedding row is +6 at its label's
output and -6 at every other; [PAD], [UNK] and nothing else are -6 everywhere. So a text's score for a label is
sigmoid(6) ≈ 0.998 when it holds that label's word, else sigmoid(-6) ≈ 0.002: the deployment's `labels` map the
outputs back to categories and severities (the config lists LABELS in this order).

The tokenizer (`tokenizers`) lowercases and splits on whitespace and punctuation; its vocabulary is the trigger
words plus [PAD] and [UNK].

How to run
----------
Needs `onnx` (pinned in requirements-build-model.txt), not an app dependency::

    python3 -m venv /tmp/buildvenv
    /tmp/buildvenv/bin/pip install onnx==1.23.2 tokenizers==0.23.3 numpy==2.4.6
    /tmp/buildvenv/bin/python scripts/build_tiny_safety_classifier.py [--output config/demo/safety-classifier]

The output is byte-for-byte the same on every run (no randomness): its sha256 values are pinned in the config.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

LABELS = [f"{c}:{s}" for c in ("hate", "sexual", "violence", "self_harm") for s in ("low", "medium", "high")]
TRIGGERS = {
    "jerk": "hate:low",
    "bigot": "hate:medium",
    "vermin": "hate:high",
    "flirt": "sexual:low",
    "nude": "sexual:medium",
    "explicit": "sexual:high",
    "punch": "violence:low",
    "stab": "violence:medium",
    "massacre": "violence:high",
    "hopeless": "self_harm:low",
    "starve": "self_harm:medium",
    "suicide": "self_harm:high",
}
LOGIT = 6.0


def build_tokenizer() -> Tokenizer:
    vocab = {"[PAD]": 0, "[UNK]": 1, **{word: i + 2 for i, word in enumerate(TRIGGERS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def build_model(vocab_size: int) -> onnx.ModelProto:
    embedding = np.full((vocab_size, len(LABELS)), -LOGIT, dtype=np.float32)
    for i, label in enumerate(TRIGGERS.values()):
        embedding[i + 2, LABELS.index(label)] = LOGIT
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["per_token"], axis=0),
        helper.make_node("ReduceMax", ["per_token"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "weight"], ["projected"]),
        helper.make_node("Add", ["projected", "bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_safety_classifier",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", len(LABELS)])],
        initializer=[
            numpy_helper.from_array(embedding, "embedding"),
            numpy_helper.from_array(np.eye(len(LABELS), dtype=np.float32), "weight"),
            numpy_helper.from_array(np.zeros(len(LABELS), dtype=np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="inferq")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--output", type=Path, default=Path("config/demo/safety-classifier"))
    out = parser.parse_args().output
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "model.onnx").write_bytes(build_model(tokenizer.get_vocab_size()).SerializeToString())
    for name in ("model.onnx", "tokenizer.json"):
        print(name, hashlib.sha256((out / name).read_bytes()).hexdigest())  # noqa: T201 (a build script)
    print("labels =", LABELS)  # noqa: T201


if __name__ == "__main__":
    main()
