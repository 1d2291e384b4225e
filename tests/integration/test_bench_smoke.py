"""`scripts/bench.py` runs and prints its embeddings table: the raw ORT rows and the product's runner (which the
bench imports by the module paths it knows, so a move in `shared/` shows here). No timing is asserted."""

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def table_rows(out: str, title: str) -> list[dict[str, str]]:
    """The rows of the printed table `title`, by column name (columns are cut where the dashes under them are)."""
    lines = out[out.index(f"## {title}") :].splitlines()
    header, dashes = lines[2], lines[3]
    spans = [m.span() for m in re.finditer(r"-+", dashes)]
    names = [header[a:b].strip() for a, b in spans]
    rows = []
    for line in lines[4:]:
        if not line.strip() or line.startswith("  "):
            break
        rows.append({n: line[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)})
    return rows


def test_bench_prints_the_raw_and_runner_rows() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--only", "raw,runner", "--texts", "40"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "FAILED" not in result.stdout, result.stdout
    rows = table_rows(result.stdout, "Embeddings")
    paths = [r["path"] for r in rows]
    assert sum(p.startswith("raw ORT") for p in paths) >= 2 and paths[-1].startswith("product runner"), paths
    assert all(float(r["texts/s"].replace(",", "")) > 0 and r["errors"] == "0" for r in rows), rows
    assert [r["vs best raw"] for r in rows if r["path"].startswith("raw ORT")].count("1.00") >= 1, rows


def test_bench_prints_the_host_row_without_an_exporter_and_with_telemetry_on() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--only", "host,telemetry", "--texts", "40"]
        + ["--clients", "2", "--texts-per-request", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "FAILED" not in result.stdout, result.stdout
    rows = {r["path"]: r for r in table_rows(result.stdout, "Embeddings")}
    assert set(rows) == {
        "local host, 2 client(s)",
        "local host, 2 client(s), 4 texts a request",
        "telemetry on: host + OTLP http export, 2 client(s)",
    }, rows
    assert all(float(r["texts/s"].replace(",", "")) > 0 and r["errors"] == "0" for r in rows.values()), rows
    exported = re.search(r"the OTLP sink took ([\d,]+) spans", result.stdout)
    assert exported is not None and int(exported.group(1).replace(",", "")) > 0, result.stdout
    # The host preloading only the embeddings deployment holds less than make run's, which preloads them all.
    startup = {r["measure"]: r["value"] for r in table_rows(result.stdout, "Start-up and memory")}
    only = startup["local host, INFERQ_PRELOAD=all-MiniLM-L6-v2: RSS after the embeddings load"]
    every = startup["local host, every deployment preloaded (make run's default): RSS after the embeddings load"]
    assert megabytes(only) < megabytes(every), startup
    # The cost rows price one text a request and 4: the same 40 texts, so a request of 4 carries 4 times the tokens.
    per_request = dict(re.findall(r"^  (embeddings[^:]*): .*?([\d.,]+) tokens/request", result.stdout, re.M))
    one, four = (float(per_request[k].replace(",", "")) for k in ("embeddings", "embeddings, 4 texts a request"))
    assert four == pytest.approx(4 * one, rel=0.02), per_request


def megabytes(value: str) -> float:
    return float(value.removesuffix(" MB").replace(",", ""))
