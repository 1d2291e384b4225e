"""Embeddings benchmark: what the pipeline adds on top of ONNX Runtime, measured in one run.

Rows: a raw `InferenceSession.run` loop (the physical limit), the runner, and the local host over HTTP with
concurrent single-input clients (queue + worker + micro-batching + job store). Prints a table; asserts nothing.
    .venv/bin/python scripts/bench_embeddings.py [--requests 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.runtimes.engines.onnx_embeddings import EmbeddingRunner  # noqa: E402
from tests.conftest import KEYS, start_host, stop_host  # noqa: E402

MODEL = ROOT / "models" / "all-MiniLM-L6-v2-int8"
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jolly boxing frogs".split()


def sentences(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(6, 24)))) for _ in range(n)]


def raw_ort(texts: list[str], batch: int) -> float:
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=256)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL / "model.onnx"), options, providers=["CPUExecutionProvider"])
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        enc = tok.encode_batch(texts[i : i + batch])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    return len(texts) / (time.perf_counter() - start)


def runner(texts: list[str], batch: int) -> float:
    r = EmbeddingRunner(MODEL, max_tokens=256, intra_op_threads=1, max_batch_size=batch)
    r.load()
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        r.predict(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - start)


def http(texts: list[str], concurrency: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        host = start_host(Path(tmp), env={"INFERQ_MAX_BATCH_WAIT_MS": "2", "INFERQ_INTRA_OP_THREADS": "1"})
        try:
            with host.client() as warm:
                warm.post("/embeddings", json={"input": "warm up"}).raise_for_status()
            latencies: list[float] = []
            clients = threading.local()  # one keep-alive client per thread, as a real caller would hold

            def one(text: str) -> None:
                if not hasattr(clients, "c"):
                    clients.c = host.client(KEYS["acme"])
                t0 = time.perf_counter()
                clients.c.post("/embeddings", json={"input": text}).raise_for_status()
                latencies.append(time.perf_counter() - t0)

            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, texts))
            elapsed = time.perf_counter() - start
        finally:
            stop_host(host)
    latencies.sort()
    return len(texts) / elapsed, statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.95)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    texts = sentences(args.requests)
    raw1, raw32 = raw_ort(texts, 1), raw_ort(texts, 32)
    run1, run32 = runner(texts, 1), runner(texts, 32)
    rps, p50, p95 = http(texts, args.concurrency)
    best = max(raw1, raw32)  # the physical limit on this machine, whichever batch size reaches it
    print(f"\nall-MiniLM-L6-v2 int8, {args.requests} inputs of 6-24 words, 1 intra-op thread\n")
    print(f"{'path':<52}{'inputs/s':>10}{'vs best raw':>13}{'p50 ms':>9}{'p95 ms':>9}")
    rows = [
        ("raw InferenceSession.run, batch 1", raw1, "", ""),
        ("raw InferenceSession.run, batch 32", raw32, "", ""),
        ("EmbeddingRunner.predict, batch 1", run1, "", ""),
        ("EmbeddingRunner.predict, batch 32", run32, "", ""),
        (f"local host HTTP, 1 input/request, {args.concurrency} clients", rps, f"{p50:.1f}", f"{p95:.1f}"),
    ]
    for name, rate, a, b in rows:
        print(f"{name:<52}{rate:>10.1f}{rate / best:>13.2f}{a:>9}{b:>9}")


if __name__ == "__main__":
    main()
