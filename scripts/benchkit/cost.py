"""$ per 1M tokens on Azure Functions Flex Consumption (on demand), from what the run measured: throughput through
one host, storage transactions per request (counted on Azurite) and the host's memory.

Default prices: USD, pay-as-you-go, East US, no free grants (they vanish at scale). Checked 2026-12-05:
- Execution time $0.000026 per GB-s (Flex on demand): Modal, "Azure Functions pricing: Consumption vs. Flex
  Consumption", 2025-05-22, https://modal.com/blog/azure-function-pricing-guide, quoting
  https://azure.microsoft.com/pricing/details/functions/ (that page fills its prices in by script; not readable here).
- Executions $0.40 per million (Flex on demand): ASSUMPTION, from memory of the same Microsoft page; not confirmed.
- Storage transactions (GPv2, LRS): ASSUMPTIONS, not confirmed from a current price list: queue $0.004 per 10,000
  operations, table $0.00036 per 10,000 transactions, blob (hot) $0.05 per 10,000 writes and $0.004 per 10,000
  reads. See https://azure.microsoft.com/pricing/details/storage/queues/, .../storage/tables/, .../storage/blobs/.
- Blob deletes are free on general-purpose v2 accounts (what infra/ deploys): Microsoft, "Map each REST operation to
  a price", https://learn.microsoft.com/azure/storage/blobs/map-rest-apis-transaction-categories (DeleteBlob:
  Free). They are counted apart, at $0 by default.
- Reference: OpenAI text-embedding-3-small $0.02 per 1M tokens (standard tier), https://developers.openai.com/api/docs/
  models/text-embedding-3-small, as recorded by https://tokenprice.fyi/models/text-embedding-3-small (2026-07-03).
Every price is a command-line option: pass today's.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from benchkit.table import Table, num

FLEX_INSTANCE_MB = (512, 2048, 4096)
STORAGE_CLASSES = ("queue", "table", "blob-write", "blob-read", "blob-delete")
DEFAULT_PER_10K = {"queue": 0.004, "table": 0.00036, "blob-write": 0.05, "blob-read": 0.004, "blob-delete": 0.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cost on Azure (defaults: list prices, see scripts/benchkit/cost.py)")
    group.add_argument("--price-gb-s", type=float, default=0.000026, help="Flex on-demand $ per GB-s")
    group.add_argument("--price-executions", type=float, default=0.40, help="Flex on-demand $ per 1M executions")
    for name, price in DEFAULT_PER_10K.items():
        group.add_argument(f"--price-{name}", type=float, default=price, help=f"$ per 10,000 {name} transactions")
    group.add_argument("--instance-mb", type=int, default=2048, choices=FLEX_INSTANCE_MB, help="Flex instance memory")
    group.add_argument(
        "--billed-instances",
        type=float,
        default=2.0,
        help="instances busy per unit of work: the HTTP function's (it waits for sync jobs) and the queue worker's",
    )
    group.add_argument("--executions-per-request", type=float, default=2.0, help="HTTP + queue trigger")
    group.add_argument("--reference-price", type=float, default=0.02, help="hosted embedding API, $ per 1M tokens")


@dataclass(frozen=True)
class Workload:
    label: str
    tokens_per_second: float  # through one host, as measured
    tokens_per_request: float
    transactions_per_request: dict[str, float]  # by storage class; empty when not measured


def per_million(args: argparse.Namespace, w: Workload, instance_mb: int) -> tuple[float, float, float]:
    """$ per 1M tokens: compute (GB-s), executions, storage transactions."""
    compute = instance_mb / 1024 * args.billed_instances / w.tokens_per_second * args.price_gb_s * 1e6
    executions = args.executions_per_request / w.tokens_per_request * args.price_executions
    storage = sum(
        n * getattr(args, f"price_{c.replace('-', '_')}") / 10_000 for c, n in w.transactions_per_request.items()
    )
    return compute, executions, storage / w.tokens_per_request * 1e6


def smallest_instance(rss_mb: float | None) -> int | None:
    """The smallest Flex memory size that holds the host (with 25% headroom), or None."""
    if rss_mb is None:
        return None
    return next((mb for mb in FLEX_INSTANCE_MB if rss_mb * 1.25 <= mb), None)


def cost_table(
    args: argparse.Namespace, workloads: list[Workload], rss_mb: float | None, idle_per_s: dict[str, float] | None
) -> Table:
    table = Table(
        "Cost on Azure Functions Flex Consumption (on demand)",
        ["row", "$ / 1M tokens", "compute", "executions", "storage", "vs reference"],
    )
    sizes = [args.instance_mb]
    fits = smallest_instance(rss_mb)
    if fits is not None and fits != args.instance_mb:
        sizes.append(fits)
    for w in workloads:
        for mb in sizes:
            parts = per_million(args, w, mb)
            total = sum(parts)
            ratio = f"{total / args.reference_price:,.1f}x" if w.label.startswith("embeddings") else ""  # like for like
            table.add(f"{w.label}, {mb} MB instance", f"${total:,.4f}", *(f"${p:,.4f}" for p in parts), ratio)
    table.add("reference: OpenAI text-embedding-3-small", f"${args.reference_price:,.4f}", "", "", "", "1.0x")
    table.notes.append(
        f"inputs: ${args.price_gb_s} per GB-s x {args.billed_instances:g} busy instances; "
        f"${args.price_executions} per 1M executions x {args.executions_per_request:g} per request; storage $ per "
        + ", ".join(f"10k {c} {getattr(args, 'price_' + c.replace('-', '_'))}" for c in STORAGE_CLASSES)
    )
    for w in workloads:
        tx = ", ".join(f"{c} {n:.2f}" for c, n in w.transactions_per_request.items() if n) or "not measured"
        table.notes.append(
            f"{w.label}: {num(w.tokens_per_second, 0)} tokens/s through one host, "
            f"{num(w.tokens_per_request, 1)} tokens/request, storage transactions/request: {tx}"
        )
    if rss_mb is not None:
        table.notes.append(
            f"host RSS after the load: {rss_mb:,.0f} MB, the host preloading only the embeddings deployment, as an "
            "instance that ran only embedding jobs holds (Flex bills the instance size, not RSS)"
        )
    if idle_per_s:
        total = sum(n * getattr(args, f"price_{c.replace('-', '_')}") / 10_000 for c, n in idle_per_s.items())
        table.notes.append(
            f"idle: {sum(idle_per_s.values()):.1f} storage requests/s while nothing runs = "
            f"${total * 86400 * 30:,.2f} per month per running host"
        )
    table.notes.append(
        "assumes an instance serves what this machine's host did (its vCPUs may differ); embeddings: one text a "
        "request unless the row names k; Event Hubs (usage) not included"
    )
    return table
