"""The embeddings and generation tables: every row as a ratio of the raw engine measured in the same run."""

from __future__ import annotations

import os

from benchkit.engines import Run
from benchkit.table import Table, num, percentile


def embeddings_table(rows: list[tuple[str, Run]], texts: int, notes: list[str]) -> Table:
    table = Table(
        f"Embeddings: all-MiniLM-L6-v2 int8, {texts} texts of 6-24 words"
        " (HTTP rows: one text a request, or k where named)",
        ["path", "texts/s", "vs best raw", "p50 ms", "p99 ms", "CPU ms/text", "cores busy", "errors"],
    )
    raw = [run.rate for label, run in rows if label.startswith("raw ORT")]
    best = max(raw) if raw else None
    for label, run in rows:
        ratio = f"{run.rate / best:.2f}" if best else ""
        p50, p99 = (num(percentile(run.latencies, q) * 1000, 1) for q in (0.5, 0.99))
        cpu = num(run.cpu_s / run.count * 1000, 2) if run.cpu_s is not None and run.count else ""
        busy = (run.cpu_s or 0) + (run.client_cpu_s or 0)
        cores = num(busy / run.seconds, 2) if run.cpu_s is not None and run.seconds else ""
        table.add(label, num(run.rate), ratio, p50, p99, cpu, cores, str(run.errors))
    if best:
        table.notes.append("best raw = the fastest raw ORT row; p50/p99 are per request (per run for raw batch 1)")
    table.notes.append(
        "CPU ms/text: CPU the engine (raw, runner rows) or the server process (HTTP rows) used, all its threads, a "
        "text; cores busy: that plus the load generator's CPU, over the wall time (this machine has "
        f"{os.cpu_count()}); what an HTTP row spends beyond the best raw row's CPU ms/text is its own overhead"
    )
    clients = [(label, run) for label, run in rows if run.client_cpu_s is not None and run.count]
    if clients:
        shown = ", ".join(f"{label}: {_client_ms(run):.2f}" for label, run in clients)
        table.notes.append(f"load generator CPU ms/request (same machine): {shown}")
    table.notes += [f"first error of {label}: {run.first_error}" for label, run in rows if run.errors]
    table.notes += notes
    return table


def _client_ms(run: Run) -> float:
    """The load generator's CPU a request (a row of k texts a request counts texts)."""
    return (run.client_cpu_s or 0) / (run.count / run.per_request) * 1000


def generation_table(rows: list[tuple[str, Run]], notes: list[str]) -> Table:
    table = Table(
        "Generation (with the tiny random-weight model: what the pipeline adds per token, not a model's speed)",
        ["path", "tokens/s", "vs raw", "p50 ms", "p99 ms", "1st chunk p50 ms", "errors"],
    )
    raw = next((run.token_rate for label, run in rows if label.startswith("raw")), None)
    for label, run in rows:
        p50, p99 = (num(percentile(run.latencies, q) * 1000, 1) for q in (0.5, 0.99))
        first = num(percentile(run.firsts, 0.5) * 1000, 1) if run.firsts else ""
        ratio = f"{run.token_rate / raw:.2f}" if raw else ""
        table.add(label, num(run.token_rate, 0), ratio, p50, p99, first, str(run.errors))
    table.notes += [f"first error of {label}: {run.first_error}" for label, run in rows if run.errors]
    table.notes += notes
    return table
