"""Generation benchmark: what the pipeline adds on top of onnxruntime-genai, measured in one run.

Rows: a raw genai token loop (the physical limit), the GenerationRunner, and the local host over HTTP (queue +
worker + job store; streamed through blob chunks). Tokens/s are generated tokens only. Prints a table; asserts
nothing. The default model is the tiny random-weight fixture: its figures say what the pipeline costs, not what
a real model's CPU speed is.
    .venv/bin/python scripts/bench_generation.py [--model-dir config/demo/tiny-chat] [--requests 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import onnxruntime_genai as og

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.runtimes.engines.genai import GenerationOptions, GenerationRunner  # noqa: E402
from tests.conftest import start_host, stop_host  # noqa: E402

MESSAGES = [{"role": "user", "content": "Tell me a story"}]
MODEL = "tiny-random-chat"


def raw_genai(model_dir: Path, new_tokens: int, requests: int) -> float:
    model = og.Model(str(model_dir))
    tokenizer = og.Tokenizer(model)
    ids = tokenizer.encode(tokenizer.apply_chat_template(json.dumps(MESSAGES), add_generation_prompt=True))
    generated, start = 0, time.perf_counter()
    for _ in range(requests):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + new_tokens, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        stream = tokenizer.create_stream()
        while not generator.is_done():
            generator.generate_next_token()
            stream.decode(int(generator.get_next_tokens()[0]))
            generated += 1
    return generated / (time.perf_counter() - start)


def runner(model_dir: Path, new_tokens: int, requests: int) -> float:
    r = GenerationRunner(model_dir, intra_op_threads=1)
    generated, start = 0, time.perf_counter()
    for _ in range(requests):
        g = r.generate(r.encode_chat(MESSAGES), GenerationOptions(max_new_tokens=new_tokens, temperature=0))
        "".join(g)
        generated += g.completion_tokens
    return generated / (time.perf_counter() - start)


def http(new_tokens: int, requests: int, concurrency: int, stream: bool) -> tuple[float, float, float]:
    """Generated tokens/s over all requests, p50 latency and p50 time to the first content chunk (ms)."""
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": new_tokens, "temperature": 0, "stream": stream}
    with tempfile.TemporaryDirectory() as tmp:
        host = start_host(Path(tmp), env={"INFERQ_INTRA_OP_THREADS": "1"})
        try:
            latencies: list[float] = []
            firsts: list[float] = []

            def one(_: int) -> int:
                with host.client() as c:
                    t0 = time.perf_counter()
                    if not stream:
                        r = c.post("/chat/completions", json=body)
                        r.raise_for_status()
                        latencies.append(time.perf_counter() - t0)
                        return int(r.json()["usage"]["completion_tokens"])
                    first = None
                    with c.stream("POST", "/chat/completions", json=body) as r:
                        for line in r.iter_lines():
                            if first is None and '"content":"' in line and '"content":""' not in line:
                                first = time.perf_counter() - t0
                    latencies.append(time.perf_counter() - t0)
                    firsts.append(first if first is not None else float("nan"))
                    return new_tokens  # greedy on this prompt: never an early EOS before the limit

            one(0)  # warm up
            latencies.clear()
            firsts.clear()
            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                generated = sum(pool.map(one, range(requests)))
            elapsed = time.perf_counter() - start
        finally:
            stop_host(host)
    first = statistics.median(firsts) * 1000 if firsts else float("nan")
    return generated / elapsed, statistics.median(latencies) * 1000, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "config" / "demo" / "tiny-chat")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=256)
    args = parser.parse_args()
    raw = raw_genai(args.model_dir, args.new_tokens, args.requests)
    rows = [
        ("raw genai token loop", raw, "", ""),
        ("GenerationRunner", runner(args.model_dir, args.new_tokens, args.requests), "", ""),
    ]
    for concurrency, stream in ((1, False), (1, True), (4, False), (4, True)):
        rate, p50, first = http(args.new_tokens, args.requests, concurrency, stream)
        name = f"local host HTTP, {'stream' if stream else 'sync'}, {concurrency} client(s)"
        rows.append((name, rate, f"{p50:.1f}", f"{first:.1f}" if stream else ""))
    print(f"\n{args.model_dir.name}: greedy, {args.new_tokens} new tokens/request, 1 intra-op thread\n")
    print(f"{'path':<46}{'tokens/s':>10}{'vs raw':>8}{'p50 ms':>9}{'1st chunk ms':>14}")
    for name, rate, p50, first in rows:
        print(f"{name:<46}{rate:>10.0f}{rate / raw:>8.2f}{p50:>9}{first:>14}")


if __name__ == "__main__":
    main()
