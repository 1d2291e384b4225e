"""The embeddings and generation tables: every row as a ratio of the raw engine measured in the same run."""

from __future__ import annotations

from benchkit.engines import Run
from benchkit.table import Table, num, percentile


def embeddings_table(rows: list[tuple[str, Run]], texts: int, notes: list[str]) -> Table:
    table = Table(
        f"Embeddings: all-MiniLM-L6-v2 int8, {texts} texts of 6-24 words (HTTP rows: one text a request)",
        ["path", "texts/s", "vs best raw", "p50 ms", "p99 ms", "errors"],
    )
    raw = [run.rate for label, run in rows if label.startswith("raw ORT")]
    best = max(raw) if raw else None
    for label, run in rows:
        ratio = f"{run.rate / best:.2f}" if best else ""
        p50, p99 = (num(percentile(run.latencies, q) * 1000, 1) for q in (0.5, 0.99))
        table.add(label, num(run.rate), ratio, p50, p99, str(run.errors))
    if best:
        table.notes.append("best raw = the fastest raw ORT row; p50/p99 are per request (per run for raw batch 1)")
    table.notes += [f"first error of {label}: {run.first_error}" for label, run in rows if run.errors]
    table.notes += notes
    return table


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
