"""`make bench`: what the pipeline costs on top of the engine, and what a million tokens costs on Azure, in one run.

One table per workload, all from the same run on the same machine (printed first):
- Embeddings (all-MiniLM-L6-v2 int8, N texts of 6-24 words, one text per request): raw ONNX Runtime at batch 1 and
  32 (length-sorted) x 1 thread, threads = cores in one run, and one 1-thread run per core at once (the best of
  these is "best raw"), the product's runner in process, a plain FastAPI + ORT server (scripts/peer_server.py)
  and the local host, at 1 and 16 clients; then the host again with OpenTelemetry on (OTLP http/protobuf to a
  local sink: scripts/benchkit/otlp_sink.py), next to the host rows that export nothing, so the overhead shows.
- Fair sharing: another tenant's one-input requests while one tenant's 2,048 x 1,600-character job runs.
- Generation (the tiny random-weight chat model): a raw onnxruntime-genai loop, the runner, the host sync and
  streamed (time to the first chunk). What the pipeline adds per token, not a real model's speed.
- Generation on SmolLM2-135M-Instruct (when `make chat-model` built it): raw genai tokens/s vs the host, sync and
  streamed (time to the first chunk), and the host's RSS with it loaded.
- Start-up: process start -> first embedding served (cold, model load included); host RSS after the load.
- Storage transactions per sync request on the Azure backend (the host on Azurite; its access logs counted), and
  idle polling per second.
- Usage ledger (SQLite, one core), then cost per 1M tokens on Flex Consumption (prices: scripts/benchkit/cost.py).
The host is started as `make run` starts it in this tree (or `--host-cmd`), with a temp data dir and config.
Prints tables; asserts nothing. The load generator shares the machine with what it measures.
    .venv/bin/python scripts/bench.py [--quick] [--texts 1000] [--only raw,runner,peer,host,fairness,...]
    .venv/bin/python scripts/bench.py --only generation --chat-model <onnxruntime-genai folder>
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the product, for the runner and ledger rows (imported lazily)

from benchkit import cost, engines, machine, processes, report  # noqa: E402
from benchkit.engines import MESSAGES, Run  # noqa: E402
from benchkit.ledger import ledger_table  # noqa: E402
from benchkit.load import grouped, load  # noqa: E402
from benchkit.otlp_sink import OtlpSink  # noqa: E402
from benchkit.table import Table, num, percentile  # noqa: E402

PARTS = ("raw", "runner", "peer", "host", "telemetry", "fairness", "generation", "smollm2", "azure", "ledger")
GROUPS = {"embeddings": ("raw", "runner", "peer", "host", "telemetry"), "startup": ("host",), "storage": ("azure",)}
# The host rows export nothing, whatever the bench's own environment holds; the telemetry row sets its exporter.
NO_EXPORTER = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "APPLICATIONINSIGHTS_CONNECTION_STRING": ""}
CHAT_CANDIDATES = ("tests/fixtures/tiny-chat", "config/demo/tiny-chat")
KEY = "bench-key"
QUICK = {"texts": 200, "gen_requests": 5, "azure_requests": 40, "idle_seconds": 2.0, "ledger_events": 5_000}
# The tiny model's request takes about 10 ms: 400 a row, so one hiccup of this machine doesn't move the row by a
# tenth (100, 2 s a row, did; 20 moved it by a quarter). SmolLM2's take most of a second: at most SMOLLM2_REQUESTS
# a row.
FULL = {"texts": 1000, "gen_requests": 400, "azure_requests": 200, "idle_seconds": 5.0, "ledger_events": 50_000}
QUICK |= {"big_inputs": 64}
FULL |= {"big_inputs": 2048}
BIG_INPUT_CHARS = 1600


@dataclass
class Bench:
    args: argparse.Namespace
    parts: set[str]
    texts: list[str]
    cores: int
    workdir: Path
    embeddings: list[tuple[str, Run]] = field(default_factory=list)
    generation: list[tuple[str, Run]] = field(default_factory=list)
    startup: Table = field(default_factory=lambda: Table("Start-up and memory", ["measure", "value"]))
    storage: Table = field(
        default_factory=lambda: Table(
            "Azure Storage transactions per sync request (local host on Azurite)",
            ["row", "req/s", "tx/request", "queue", "table", "blob write", "blob read", "blob delete", "errors"],
        )
    )
    notes: dict[str, list[str]] = field(default_factory=dict)
    host_config: processes.HostConfig | None = None
    rss_mb: float | None = None
    tx: dict[str, dict[str, float]] = field(default_factory=dict)  # per request, by workload
    idle: dict[str, float] | None = None

    def note(self, table: str, text: str) -> None:
        self.notes.setdefault(table, []).append(text)

    def attempt(self, table: str, what: str, step: Callable[[], object]) -> None:
        """Run one step; a failure becomes a note under its table, and the run goes on."""
        progress(what)
        try:
            step()
        except Exception as exc:  # any failure of one row must not lose the others
            self.note(table, f"{what}: FAILED: {type(exc).__name__}: {str(exc).strip()[:2000]}")
            if self.args.verbose:
                traceback.print_exc()

    def measure(self, rows: list[tuple[str, Run]], table: str, label: str, step: Callable[[], Run]) -> None:
        """An in-process row: the fastest of `--repeat` runs (the limit is the engine at its best)."""

        def fastest() -> None:
            runs = [timed(step) for _ in range(max(1, self.args.repeat))]
            rows.append((label, max(runs, key=rate)))

        self.attempt(table, label, fastest)


def timed(step: Callable[[], Run]) -> Run:
    """An in-process row with the CPU it used (every thread of this process: the engine's own included)."""
    before = processes.own_cpu_s()
    run = step()
    run.cpu_s = processes.own_cpu_s() - before
    return run


def rate(run: Run) -> float:
    return run.token_rate if run.tokens else run.rate


def progress(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


# --- embeddings ----------------------------------------------------------------------------------------------------


def embedding_rows(b: Bench) -> None:
    model = b.args.model_dir
    if "raw" in b.parts:
        # threads = cores either inside one run (intra-op) or as one single-threaded run per core
        configs = [(t, 1) for t in sorted({1, b.cores})] + ([(1, b.cores)] if b.cores > 1 else [])
        for batch, sort in ((1, False), (32, True)):
            for threads, runs in configs:
                at_once = f", {runs} runs at once" if runs > 1 else ""
                label = f"raw ORT, batch {batch}{', length-sorted' if sort else ''}, {threads} thread(s){at_once}"
                step = partial(engines.raw_embeddings, model, b.texts, batch, threads, sort, runs)
                b.measure(b.embeddings, "embeddings", label, step)
    if "runner" in b.parts:
        label = f"product runner in process, batch 32, {b.cores} thread(s)"
        b.measure(b.embeddings, "embeddings", label, partial(engines.runner_embeddings, model, b.texts, 32, b.cores))
    if "peer" in b.parts:
        b.attempt("embeddings", "peer server (FastAPI + ORT)", lambda: peer_rows(b))


def peer_rows(b: Bench) -> None:
    server = processes.start_peer(ROOT, b.workdir, b.args.model_dir)
    try:
        bodies = [{"input": t} for t in b.texts]
        for clients in b.args.clients:
            load(server.url, "/embeddings", bodies[: clients * 2], clients)  # warm up
            b.embeddings.append((f"peer FastAPI + ORT server, {clients} client(s)", load_run(server, bodies, clients)))
        grouped_row(b, server, "peer FastAPI + ORT server", bodies)
        b.startup.add("peer server RSS after its load", f"{server.rss_mb():,.0f} MB")
    finally:
        server.stop()


def load_run(server: processes.Server, bodies: list[dict[str, Any]], clients: int, **kw: Any) -> Run:
    """One load on a server, once it is idle, with the CPU the server and the load generator (this process) used
    meanwhile."""
    server.settle()
    server_cpu, own_cpu = server.cpu_s(), processes.own_cpu_s()
    run = load(server.url, kw.pop("path", "/embeddings"), bodies, clients, {"api-key": KEY}, **kw)
    run.cpu_s, run.client_cpu_s = server.cpu_s() - server_cpu, processes.own_cpu_s() - own_cpu
    return run


def grouped_row(b: Bench, server: processes.Server, name: str, bodies: list[dict[str, Any]]) -> None:
    """The row `name` at the most clients, with the same texts `--texts-per-request` (k) to a request: its `count`
    counts texts, so its texts/s and CPU a text compare with the one-text rows'. Where batching pays: the pipeline's
    cost a request is shared by k texts, and every request fills a run."""
    k, clients = b.args.texts_per_request, max(b.args.clients)
    if k < 2:
        return
    requests = grouped(bodies, k)
    load_run(server, requests[: clients * 2], clients)  # warm up
    run = load_run(server, requests, clients)
    run.count, run.per_request = len(requests) * k, k
    b.embeddings.append((f"{name}, {clients} client(s), {k} texts a request", run))


# --- the local host (embeddings, generation, start-up) -------------------------------------------------------------


def host_env(b: Bench) -> dict[str, str]:
    return NO_EXPORTER | dict(kv.split("=", 1) for kv in b.args.host_env)


def embed_bodies(b: Bench) -> list[dict[str, Any]]:
    assert b.host_config is not None
    return [{"input": t, "model": b.host_config.embeddings_model} for t in b.texts]


def chat_bodies(b: Bench, stream: bool, n: int) -> list[dict[str, Any]]:
    assert b.host_config is not None and b.host_config.chat_model is not None
    body = {"model": b.host_config.chat_model, "messages": MESSAGES, "max_tokens": b.args.new_tokens, "temperature": 0}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return [body] * n


def host_rows(b: Bench) -> None:
    """The host preloading only the embeddings deployment (the others load on their first request): what an Azure
    instance that ran embedding jobs holds, and so what the cost rows size. Then `make run`'s default, everything."""
    assert b.host_config is not None
    bodies = embed_bodies(b)
    preload = f"INFERQ_PRELOAD={b.host_config.embeddings_model}"
    env = {"INFERQ_PRELOAD": b.host_config.embeddings_model} | host_env(b)
    server, cold = processes.start_host(b.args.host_cmd, ROOT, b.workdir, b.host_config, KEY, env, bodies[0])
    b.startup.add(
        f"local host, {preload}: process start -> first embedding served (cold, model load included)", f"{cold:.2f} s"
    )
    try:
        for clients in b.args.clients:
            load_run(server, bodies[: clients * 2], clients)  # warm up
            with profiled(b, server, clients == max(b.args.clients)):
                run = load_run(server, bodies, clients)
            b.embeddings.append((f"local host, {clients} client(s)", run))
        grouped_row(b, server, "local host", bodies)
        b.rss_mb = server.rss_mb()
        b.startup.add(f"local host, {preload}: RSS after the embeddings load", f"{b.rss_mb:,.0f} MB")
        if "generation" in b.parts and b.host_config.chat_model:
            n = b.args.gen_requests
            for clients in b.args.gen_clients:
                for stream in (False, True):
                    load_run(server, chat_bodies(b, stream, clients), clients, path="/chat/completions", stream=stream)
                    run = load_run(
                        server,
                        chat_bodies(b, stream, n),
                        clients,
                        path="/chat/completions",
                        stream=stream,
                        usage="completion_tokens",
                    )
                    b.generation.append((f"local host, {'streamed' if stream else 'sync'}, {clients} client(s)", run))
            b.startup.add(f"local host, {preload}: RSS after generation too", f"{server.rss_mb():,.0f} MB")
    finally:
        server.stop()
    b.attempt("embeddings", "local host, every deployment preloaded", lambda: preloading_all(b))


def preloading_all(b: Bench) -> None:
    """`make run`'s default: every deployment of the example config loaded at start, then the same embeddings load."""
    bodies = embed_bodies(b)
    workdir = b.workdir / "preload-all"
    workdir.mkdir(exist_ok=True)
    server, cold = processes.start_host(b.args.host_cmd, ROOT, workdir, b.host_config, KEY, host_env(b), bodies[0])
    try:
        load_run(server, bodies, max(b.args.clients))
        rss = server.rss_mb()
    finally:
        server.stop()
    every = "local host, every deployment preloaded (make run's default)"
    b.startup.add(f"{every}: process start -> first embedding served", f"{cold:.2f} s")
    b.startup.add(f"{every}: RSS after the embeddings load", f"{rss:,.0f} MB")


def telemetry_rows(b: Bench) -> None:
    """The host as in its rows, with traces and metrics exported over OTLP (http/protobuf) to a local sink."""
    bodies = embed_bodies(b)
    with OtlpSink() as sink:
        env = host_env(b) | {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "1000",  # spans leave at least every second (and at every 512)
            "OTEL_METRIC_EXPORT_INTERVAL": "5000",
        }
        workdir = b.workdir / "telemetry"
        workdir.mkdir(exist_ok=True)
        server, _ = processes.start_host(b.args.host_cmd, ROOT, workdir, b.host_config, KEY, env, bodies[0])
        try:
            for clients in b.args.clients:
                load_run(server, bodies[: clients * 2], clients)  # warm up
                run = load_run(server, bodies, clients)
                b.embeddings.append((f"telemetry on: host + OTLP http export, {clients} client(s)", run))
        finally:
            server.stop()  # its exporters flush as it shuts down
        got = sink.received
        b.note("embeddings", "local host rows export nothing (telemetry off: no OTLP endpoint, no App Insights)")
        b.note("embeddings", f"telemetry rows: the OTLP sink took {got.spans:,} spans in {got.requests:,} exports")


@contextmanager
def profiled(b: Bench, server: processes.Server, active: bool) -> Iterator[None]:
    if not active or b.args.py_spy is None:
        yield
        return
    with processes.py_spy(server.process.pid, b.args.py_spy) as note:
        yield
    b.note("embeddings", note.replace("{load}", f"the {max(b.args.clients)}-client load"))


# --- fair sharing --------------------------------------------------------------------------------------------------


def fairness_rows(b: Bench) -> Table:
    """One tenant's async job of `--big-inputs` x 1,600-character inputs; meanwhile another tenant sends one-input
    sync requests one after another until the big job ends: their latency is what sharing the engine costs."""
    table = Table("Fair sharing: another tenant's requests while one big job runs", ["row", "value"])
    bodies = embed_bodies(b)
    workdir = b.workdir / "fairness"
    workdir.mkdir(exist_ok=True)
    server, _ = processes.start_host(b.args.host_cmd, ROOT, workdir, b.host_config, KEY, host_env(b), bodies[0])
    words = " ".join(engines.corpus(400, b.args.seed + 1))
    big = {
        "model": bodies[0]["model"],
        "input": [words[i * 7 : i * 7 + BIG_INPUT_CHARS] for i in range(b.args.big_inputs)],
    }
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            other = {"api-key": processes.OTHER_TENANT_KEY}
            client.post("/embeddings", json=bodies[1], headers=other)  # warm: this tenant's first request
            start = time.perf_counter()
            accepted = client.post("/embeddings", json=big, headers={"api-key": KEY, "Prefer": "respond-async"})
            if accepted.status_code != 202:
                raise RuntimeError(f"the big job was not accepted: {accepted.status_code} {accepted.text[:300]}")
            job = accepted.headers["Operation-Location"]
            latencies, errors, i = [], 0, 0
            while True:
                i += 1
                t0 = time.perf_counter()
                response = client.post("/embeddings", json=bodies[i % len(bodies)], headers=other)
                latencies.append(time.perf_counter() - t0)
                errors += response.status_code != 200
                status = client.get(job, headers={"api-key": KEY}).json()["status"]
                if status not in ("queued", "running"):
                    break
            big_s = time.perf_counter() - start
    finally:
        server.stop()
    ms = [x * 1000 for x in latencies]
    table.add(f"big job: {b.args.big_inputs} inputs x {BIG_INPUT_CHARS} characters ({status})", f"{big_s:.1f} s")
    table.add("other tenant's one-input sync requests meanwhile", f"{len(ms)} ({errors} not 200)")
    for label, q in (("p50", 0.5), ("p95", 0.95), ("max", 1.0)):
        table.add(f"  latency {label}", f"{percentile(ms, q):,.0f} ms")
    table.notes.append("settings as the host defaults (--host-env to try others); the two tenants share one host")
    return table


# --- generation ----------------------------------------------------------------------------------------------------


def chat_model_dir(b: Bench) -> Path | None:
    if b.args.chat_model:
        return b.args.chat_model
    if b.host_config and b.host_config.chat_dir and b.host_config.chat_dir.is_dir():
        return b.host_config.chat_dir
    return next((ROOT / c for c in CHAT_CANDIDATES if (ROOT / c / "genai_config.json").exists()), None)


def generation_rows(b: Bench) -> None:
    model = chat_model_dir(b)
    if model is None:
        b.note("generation", f"no onnxruntime-genai model found ({', '.join(CHAT_CANDIDATES)}): pass --chat-model")
        return
    a = b.args
    for label, measure in (
        ("raw onnxruntime-genai loop", engines.raw_generation),
        ("product runner in process", engines.runner_generation),
    ):
        step = partial(measure, model, a.new_tokens, a.gen_requests, a.gen_threads)
        b.measure(b.generation, "generation", label, step)
    b.note(
        "generation",
        f"model: {model}; greedy, {a.new_tokens} new tokens a request, {a.gen_requests} requests a row, "
        f"{a.gen_threads} thread(s)",
    )


# --- SmolLM2 (the real chat model `make chat-model` builds) --------------------------------------------------------

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_DIR = ROOT / "models" / "smollm2-135m-instruct-int4"
SMOLLM2_NEW_TOKENS = 128
SMOLLM2_REQUESTS = 20


def smollm2_rows(b: Bench) -> Table:
    """Raw genai tokens/s at the host's thread count, against the host sync and streamed (time to the first chunk),
    one client, greedy; the host's RSS with the model loaded."""
    table = Table(
        "Generation on SmolLM2-135M-Instruct int4 (a real model; `make chat-model`)",
        ["path", "tokens/s", "vs raw", "p50 ms", "1st chunk p50 ms", "errors"],
    )
    if not (SMOLLM2_DIR / "manifest.json").is_file():
        table.notes.append(f"not built ({SMOLLM2_DIR} has no manifest.json): run `make chat-model` for these rows")
        return table
    assert b.host_config is not None
    n, tokens = min(b.args.gen_requests, SMOLLM2_REQUESTS), SMOLLM2_NEW_TOKENS
    raw = engines.raw_generation(SMOLLM2_DIR, tokens, n, b.cores)
    rows = [(f"raw onnxruntime-genai loop, {b.cores} threads", raw)]
    body = {"model": SMOLLM2, "messages": MESSAGES, "max_tokens": tokens, "temperature": 0}
    (b.workdir / "smollm2").mkdir(exist_ok=True)
    server, _ = processes.start_host(
        b.args.host_cmd, ROOT, b.workdir / "smollm2", b.host_config, KEY, host_env(b), embed_bodies(b)[0]
    )
    try:
        for stream in (False, True):
            sent = body | ({"stream": True, "stream_options": {"include_usage": True}} if stream else {})
            load_run(server, [sent], 1, path="/chat/completions", stream=stream)  # loads the model
            run = load_run(server, [sent] * n, 1, path="/chat/completions", stream=stream, usage="completion_tokens")
            rows.append((f"local host, {'streamed' if stream else 'sync'}, 1 client", run))
        rss = server.rss_mb()
    finally:
        server.stop()
    for label, run in rows:
        first = num(percentile(run.firsts, 0.5) * 1000, 1) if run.firsts else ""
        ratio = f"{run.token_rate / raw.token_rate:.2f}" if raw.token_rate else ""
        table.add(
            label, num(run.token_rate, 0), ratio, num(percentile(run.latencies, 0.5) * 1000, 1), first, str(run.errors)
        )
    table.notes.append(
        f"greedy, prompt {MESSAGES[0]['content']!r}, at most {tokens} new tokens, {n} requests a row; "
        f"host RSS (process tree) with SmolLM2 loaded beside the other deployments: {rss:,.0f} MB"
    )
    return table


# --- Azure Storage transactions ------------------------------------------------------------------------------------


def azure_rows(b: Bench) -> None:
    azurite = processes.Azurite(ROOT, b.workdir)
    workdir = b.workdir / "azure"
    workdir.mkdir(exist_ok=True)
    env = {
        **host_env(b),
        "INFERQ_BACKEND": "azure",
        "AzureWebJobsStorage": azurite.connection_string(),
        "EventHubConnection": "",
    }
    try:
        bodies = embed_bodies(b)
        server, cold = processes.start_host(b.args.host_cmd, ROOT, workdir, b.host_config, KEY, env, bodies[0])
        b.startup.add("local host on Azurite: process start -> first embedding served", f"{cold:.2f} s")
        try:
            load_run(server, bodies[:4], 2)  # warm up
            before = azurite.counts()
            time.sleep(b.args.idle_seconds)
            b.idle = {k: v / b.args.idle_seconds for k, v in (azurite.counts() - before).items()}
            storage_row(b, "idle: nothing running, per second", None, b.idle)
            n = b.args.azure_requests
            runs = [(f"sync embeddings, {c} client(s)", f"embeddings-{c}", bodies[:n], c, {}) for c in b.args.clients]
            k, c = b.args.texts_per_request, max(b.args.clients)
            if k > 1:  # n requests of k texts
                label = f"sync embeddings, {c} client(s), {k} texts a request"
                runs.append((label, f"embeddings-{c}x{k}", grouped((bodies * k)[: n * k], k), c, {}))
            if b.host_config and b.host_config.chat_model:
                m = max(2, n // 10)
                chat: dict[str, Any] = {"path": "/chat/completions", "usage": "completion_tokens"}
                runs.append(("sync chat, 1 client", "chat", chat_bodies(b, False, m), 1, chat))
                streamed = chat | {"stream": True}
                runs.append(("streamed chat, 1 client", "chat-stream", chat_bodies(b, True, m), 1, streamed))
            for label, key, requests, clients, kw in runs:
                before = azurite.counts()
                run = load_run(server, requests, clients, **kw)
                b.tx[key] = {k: v / run.count for k, v in (azurite.counts() - before).items()}
                storage_row(b, label, run, b.tx[key])
        finally:
            server.stop()
    finally:
        azurite.stop()


def storage_row(b: Bench, label: str, run: Run | None, per: dict[str, float]) -> None:
    figures = [num(per.get(c, 0.0), 2) for c in cost.STORAGE_CLASSES]
    rate = num(run.rate) if run else ""
    b.storage.add(label, rate, num(sum(per.values()), 2), *figures, str(run.errors) if run else "")


# --- cost ----------------------------------------------------------------------------------------------------------


def cost_rows(b: Bench) -> Table:
    workloads = []
    hosts = [r for label, r in b.embeddings if label.startswith("local host") and r.count // r.per_request > r.errors]
    for k in sorted({run.per_request for run in hosts}):  # one text a request; then k
        run = max((r for r in hosts if r.per_request == k), key=lambda r: r.rate)
        tx = b.tx.get(f"embeddings-{max(b.args.clients)}" + (f"x{k}" if k > 1 else ""), {})
        label = "embeddings" + (f", {k} texts a request" if k > 1 else "")
        requests = run.count // k - run.errors
        workloads.append(cost.Workload(label, run.token_rate, run.tokens / requests, tx))
    for mode, tx in (("sync", "chat"), ("streamed", "chat-stream")):
        gens = [run for label, run in b.generation if label.startswith(f"local host, {mode}") and run.tokens]
        if gens:
            run = max(gens, key=lambda r: r.token_rate)
            per_request = run.tokens / (run.count - run.errors)
            label = f"generation {mode} (tiny model)"
            workloads.append(cost.Workload(label, run.token_rate, per_request, b.tx.get(tx, {})))
    table = cost.cost_table(b.args, workloads, b.rss_mb, b.idle)
    if not workloads:
        table.notes.insert(0, "no host rows in this run (--only): nothing to price")
    return table


# --- main ----------------------------------------------------------------------------------------------------------


def print_ledger(events: int, batches: list[int]) -> None:
    print(ledger_table(events, batches).render(), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run (figures meaningless)")
    parser.add_argument("--texts", type=int, help=f"embedding texts (default {FULL['texts']}, quick {QUICK['texts']})")
    parser.add_argument("--only", default="", help=f"comma list of {', '.join(PARTS)} (or {', '.join(GROUPS)})")
    parser.add_argument("--clients", default="1,16", help="concurrent HTTP clients for the embedding rows")
    parser.add_argument(
        "--texts-per-request",
        type=int,
        default=8,
        help="k of the rows that send k texts a request (peer, host, Azurite, cost), at the most clients; 1: none",
    )
    parser.add_argument("--gen-clients", default="1,4", help="concurrent HTTP clients for the generation rows")
    parser.add_argument("--gen-requests", type=int, help="generations per row")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--gen-threads", type=int, default=1, help="intra-op threads of the raw and runner rows")
    parser.add_argument("--azure-requests", type=int, help="requests per Azurite row")
    parser.add_argument("--big-inputs", type=int, help="inputs of the fair-sharing row's big job")
    parser.add_argument("--idle-seconds", type=float, help="how long to count idle polling")
    parser.add_argument("--ledger-events", type=int)
    parser.add_argument("--ledger-batches", default="64,256,1024")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "all-MiniLM-L6-v2-int8")
    parser.add_argument("--chat-model", type=Path, help="an onnxruntime-genai folder (default: the config's)")
    parser.add_argument("--host-cmd", help="how to start the local host (default: the Makefile's run target)")
    parser.add_argument("--host-env", action="append", default=[], metavar="KEY=VALUE", help="for the host")
    parser.add_argument("--py-spy", type=Path, metavar="FILE", help="profile the host under the largest load")
    parser.add_argument("--repeat", type=int, default=1, help="in-process rows: keep the fastest of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="tracebacks of failed rows")
    cost.add_arguments(parser)
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.clients = [int(c) for c in args.clients.split(",")]
    args.gen_clients = [int(c) for c in args.gen_clients.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()] or list(PARTS)
    unknown = [w for w in wanted if w not in PARTS and w not in GROUPS]
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(PARTS + tuple(GROUPS))}")
    parts = {p for w in wanted for p in GROUPS.get(w, (w,))}
    cores = machine.available_cores()
    args.host_cmd = processes.host_command(ROOT, args.host_cmd)
    print(machine.header(args.quick), flush=True)
    with tempfile.TemporaryDirectory(prefix="inferq-bench-") as tmp:
        b = Bench(args, parts, engines.corpus(args.texts, args.seed), cores, Path(tmp))
        b.host_config = processes.write_host_config(ROOT, b.workdir / "inferq.toml", KEY)
        tokens = engines.token_counts(args.model_dir, b.texts)
        print(f"corpus: {len(b.texts)} texts (seed {args.seed}), {sum(tokens) / len(tokens):.1f} tokens a text")
        command = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(args.host_cmd))
        print(f"host: {command}" + (f", with {' '.join(args.host_env)}" if args.host_env else ""), flush=True)
        if "generation" in parts:
            generation_rows(b)
        embedding_rows(b)
        if "host" in parts:
            b.attempt("embeddings", "local host", lambda: host_rows(b))
        if "telemetry" in parts:
            b.attempt("embeddings", "local host, telemetry on", lambda: telemetry_rows(b))
        if parts & {"raw", "runner", "peer", "host", "telemetry"}:
            print(
                report.embeddings_table(b.embeddings, len(b.texts), b.notes.get("embeddings", [])).render(), flush=True
            )
        if "fairness" in parts:
            b.attempt("fairness", "fair sharing", lambda: print(fairness_rows(b).render(), flush=True))
            for line in b.notes.get("fairness", []):
                print(f"  {line}")
        if "generation" in parts:
            print(report.generation_table(b.generation, b.notes.get("generation", [])).render(), flush=True)
        if "smollm2" in parts:
            b.attempt("smollm2", "SmolLM2 generation", lambda: print(smollm2_rows(b).render(), flush=True))
            for line in b.notes.get("smollm2", []):
                print(f"  {line}")
        if "azure" in parts:
            b.attempt("storage", "local host on Azurite", lambda: azure_rows(b))
            b.storage.notes += [
                "every request Azurite served during the row, idle polling included, per request; "
                "req/s is Azurite's speed, not Azure's"
            ]
            b.storage.notes += b.notes.get("storage", [])
            print(b.storage.render(), flush=True)
        if b.startup.rows:
            print(b.startup.render(), flush=True)
        if "ledger" in parts:
            batches = [int(x) for x in args.ledger_batches.split(",")]
            b.attempt("ledger", "usage ledger", partial(print_ledger, args.ledger_events, batches))
            for line in b.notes.get("ledger", []):
                print(f"  {line}")
        if parts & {"host", "azure"}:
            print(cost_rows(b).render(), flush=True)
    print(f"\nload average at the end: {machine.load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
