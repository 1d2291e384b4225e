"""The run's header: the machine, the versions, and how busy the cores already are."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = ("onnxruntime", "onnxruntime-genai", "tokenizers", "fastapi", "uvicorn", "uvloop", "httptools")


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def header(quick: bool) -> str:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor() or "unknown CPU",
    )
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return "\n".join(
        [
            f"# inferq bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC" + (" (--quick)" if quick else ""),
            f"machine: {cpu}, {available_cores()} cores available ({os.cpu_count()} online), {platform.platform()}",
            f"Python {platform.python_version()}; " + ", ".join(versions),
            f"load average at start: {load_average()} (anything else running on these cores makes every figure noisy)",
        ]
    )
