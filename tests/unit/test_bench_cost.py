"""The bench's cost rows (`scripts/benchkit/cost.py`) price what Azurite served by Azure's price classes: a blob
delete is free on a general-purpose v2 account (Microsoft's "Map each REST operation to a price"), so it is
counted apart from the writes and costs nothing at the default prices."""

from __future__ import annotations

import argparse
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from benchkit import cost  # noqa: E402
from benchkit.processes import storage_class  # noqa: E402


@pytest.mark.parametrize(
    ("service", "method", "expected"),
    [
        ("blob", "PUT", "blob-write"),
        ("blob", "POST", "blob-write"),
        ("blob", "GET", "blob-read"),
        ("blob", "HEAD", "blob-read"),
        ("blob", "DELETE", "blob-delete"),
        ("queue", "DELETE", "queue"),
        ("table", "GET", "table"),
    ],
)
def test_each_request_azurite_served_gets_its_price_class(service: str, method: str, expected: str) -> None:
    assert storage_class(service, method) == expected


def defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cost.add_arguments(parser)
    return parser.parse_args([])


def test_blob_deletes_cost_nothing_at_the_default_prices_and_writes_do() -> None:
    args = defaults()
    deletes = cost.Workload("deletes", 1000.0, 100.0, {"blob-delete": 4.0})
    writes = cost.Workload("writes", 1000.0, 100.0, {"blob-write": 4.0})
    assert cost.per_million(args, deletes, 512)[2] == 0.0
    # 4 writes a request of 100 tokens: 40,000 a million tokens, at $0.05 per 10,000
    assert cost.per_million(args, writes, 512)[2] == pytest.approx(0.2)


def test_a_delete_price_given_on_the_command_line_is_used() -> None:
    parser = argparse.ArgumentParser()
    cost.add_arguments(parser)
    args = parser.parse_args(["--price-blob-delete", "0.05"])
    deletes = cost.Workload("deletes", 1000.0, 100.0, {"blob-delete": 4.0})
    assert cost.per_million(args, deletes, 512)[2] == pytest.approx(0.2)
