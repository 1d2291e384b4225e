#!/usr/bin/env python3
"""Build the tiny random-weight chat model used as a test fixture.

What it is
----------
A ~0.6 MB Llama-style decoder with *random* weights, in onnxruntime-genai
format (``model.onnx`` + ``genai_config.json`` + Hugging Face tokenizer
files). It exists so the test suite can exercise the real onnxruntime-genai
load / tokenize / chat-template / generate code paths on CPU without
downloading a model from a hub. Its output is gibberish by design.

How it is built
---------------
1. A byte-level BPE tokenizer (Hugging Face ``tokenizers``) is trained on the
   English text held in ``CORPUS`` below, with special tokens ``<pad>``,
   ``<s>`` (BOS), ``</s>``, ``<|im_start|>`` and ``<|im_end|>`` and a
   ChatML-style Jinja chat template (``<|im_start|>role\\ncontent<|im_end|>\\n``,
   with ``add_generation_prompt`` support). ``<|im_end|>`` is the tokenizer's
   EOS (end of turn); ``</s>`` is also an EOS id in the model config.
2. A ``transformers`` ``LlamaForCausalLM`` (hidden 64, 2 layers, 4 heads,
   2 KV heads, intermediate 128, context 512, untied embeddings) is created with
   random weights from a fixed seed and saved as an HF folder in a temp dir.
3. The onnxruntime-genai model builder
   (``python -m onnxruntime_genai.models.builder -i HF -o OUT -p fp32 -e cpu``)
   converts it; then ``genai_config.json`` is normalised (search defaults:
   ``max_length`` 512, ``do_sample`` false; ``eos_token_id`` set) and the
   chat template is made sure to sit in ``tokenizer_config.json``.
4. A constant bias is added after the LM head so that the model never
   *generates* tokens that are not printable UTF-8 on their own (lone UTF-8
   bytes, control characters) or the non-EOS special tokens; see
   ``unprintable_token_ids``. Encoding/decoding of any input is unaffected.

How to run
----------
The build needs torch & co, which are NOT runtime dependencies of the app::

    python3 -m venv /tmp/buildvenv
    /tmp/buildvenv/bin/pip install -r requirements-build-model.txt
    /tmp/buildvenv/bin/python scripts/build_tiny_chat_model.py \\
        [--output config/demo/tiny-chat] [--seed 0]

Everything is seeded, and the build runs with ``HF_HUB_OFFLINE=1``: nothing
is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

# Never touch a hub, in this process or in the builder subprocess.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "config" / "demo" / "tiny-chat"

# --- tokenizer ------------------------------------------------------------

PAD, BOS, EOS, IM_START, IM_END = "<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START, IM_END]  # ids 0..4, in this order
VOCAB_SIZE = 512  # target; the trained vocab may come out a little smaller

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = """\
The quick brown fox jumps over the lazy dog. A small model can still say many
things, even if none of them make sense. This text is only here to teach a
tiny tokenizer which pieces of English words appear together most often.

Serverless functions start when a request arrives and stop when the work is
done. They read a model from disk, load it into memory, and answer questions
one token at a time. The first request after a cold start is slow, while the
following requests are fast because the model is already warm.

Hello! How are you today? I am fine, thank you. What would you like to know?
Please tell me about the weather, the time, and the news of the day. The sun
is shining, the sky is blue, and the wind is calm over the hills and rivers.

A user sends a message, the assistant writes a reply, and the system sets the
rules for the conversation. Every message has a role and some content. The
assistant should be helpful, honest, and brief. When the answer is finished,
the assistant stops and waits for the next question from the user.

Numbers and symbols matter too: one, two, three, four, five, six, seven,
eight, nine, ten; 0 1 2 3 4 5 6 7 8 9; plus, minus, equals, dollars and cents.
Testing is important because it shows that the code works the way we expect.
"""


def train_tokenizer(out_dir: Path, vocab_size: int = VOCAB_SIZE) -> int:
    """Train a byte-level BPE tokenizer and save it as an HF tokenizer folder.

    Returns the vocabulary size.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=IM_END,  # end of an assistant turn
        pad_token=PAD,
        unk_token=None,
        additional_special_tokens=[IM_START, IM_END, EOS],
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.save_pretrained(out_dir)
    return tok.get_vocab_size()


# --- model ----------------------------------------------------------------


def make_hf_model(out_dir: Path, vocab_size: int, seed: int) -> None:
    import numpy as np
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)

    eos_ids = [SPECIAL_TOKENS.index(IM_END), SPECIAL_TOKENS.index(EOS)]
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        hidden_act="silu",
        initializer_range=0.02,
        tie_word_embeddings=False,  # tied + tiny random weights => greedy just repeats the last token
        bos_token_id=SPECIAL_TOKENS.index(BOS),
        eos_token_id=eos_ids,
        pad_token_id=SPECIAL_TOKENS.index(PAD),
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=eos_ids,
        pad_token_id=config.pad_token_id,
        do_sample=False,
        max_length=512,
    ).save_pretrained(out_dir)


def run_builder(hf_dir: Path, out_dir: Path, cache_dir: Path, precision: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(hf_dir),
        "-o",
        str(out_dir),
        "-p",
        precision,
        "-e",
        "cpu",
        "-c",
        str(cache_dir),
        "--extra_options",
        "hf_token=false",
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})


def finalize(out_dir: Path) -> None:
    """Normalise genai_config.json and tokenizer_config.json, drop stray files."""
    cfg_path = out_dir / "genai_config.json"
    cfg = json.loads(cfg_path.read_text())
    eos_ids = [SPECIAL_TOKENS.index(IM_END), SPECIAL_TOKENS.index(EOS)]
    cfg["model"]["eos_token_id"] = eos_ids
    cfg["model"]["bos_token_id"] = SPECIAL_TOKENS.index(BOS)
    cfg["model"]["pad_token_id"] = SPECIAL_TOKENS.index(PAD)
    assert cfg["model"]["context_length"] == 512, cfg["model"]["context_length"]
    search = cfg.setdefault("search", {})
    search.update(
        {
            "max_length": 512,
            "min_length": 0,
            "do_sample": False,
            "num_beams": 1,
            "num_return_sequences": 1,
            "temperature": 1.0,
            "top_k": 50,
            "top_p": 1.0,
            "repetition_penalty": 1.0,
        }
    )
    cfg_path.write_text(json.dumps(cfg, indent=4, sort_keys=False) + "\n")

    # onnxruntime-extensions reads the chat template from tokenizer_config.json;
    # newer transformers may write it to chat_template.jinja instead.
    tc_path = out_dir / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["chat_template"] = CHAT_TEMPLATE
    tc["add_bos_token"] = False
    tc["add_eos_token"] = False
    tc["bos_token"], tc["eos_token"], tc["pad_token"] = BOS, IM_END, PAD
    tc["model_max_length"] = 512
    for junk in ("is_local", "local_files_only"):  # load-time flags leaked by save_pretrained
        tc.pop(junk, None)
    tc_path.write_text(json.dumps(tc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    jinja = out_dir / "chat_template.jinja"
    if jinja.exists():
        jinja.unlink()


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode (the ByteLevel pre-tokenizer's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
    bs += list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def unprintable_token_ids(tokenizer_json: Path) -> list[int]:
    """Ids the model should never generate.

    With random weights the model happily emits lone UTF-8 continuation bytes
    and control characters. onnxruntime-genai's decode() then cuts the text at
    the first invalid byte and its TokenizerStream silently drops bytes, so
    streamed and non-streamed text would disagree. Keep the gibberish
    printable: ban tokens whose bytes are not valid UTF-8 on their own or hold
    control characters other than newline/tab, and the non-EOS special tokens.
    (The prompt side is unaffected: any text still encodes and decodes.)
    """
    tj = json.loads(tokenizer_json.read_text())
    dec = _byte_decoder()
    banned = [SPECIAL_TOKENS.index(t) for t in (PAD, BOS, IM_START)]
    for token, idx in tj["model"]["vocab"].items():
        if token in SPECIAL_TOKENS:
            continue
        raw = bytes(dec[ch] for ch in token)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            banned.append(idx)
            continue
        if any(unicodedata.category(ch).startswith("C") and ch not in "\n\t" for ch in text):
            banned.append(idx)
    return sorted(banned)


def mask_logits(model_path: Path, banned_ids: list[int], vocab_size: int) -> None:
    """Append ``logits += bias`` (bias = -1e9 at banned ids) after the LM head."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_path), load_external_data=False)
    graph = model.graph
    (lm_head,) = [n for n in graph.node if "logits" in n.output]
    inner = "/lm_head/MatMul/output_0"
    lm_head.output[list(lm_head.output).index("logits")] = inner
    bias = np.zeros(vocab_size, dtype=np.float32)
    bias[banned_ids] = -1e9
    graph.initializer.append(numpy_helper.from_array(bias, name="lm_head.logit_mask"))
    graph.node.append(helper.make_node("Add", [inner, "lm_head.logit_mask"], ["logits"], name="/lm_head/LogitMask"))
    onnx.save(model, str(model_path))  # weights stay in the untouched external data file
    # (onnx.checker rejects the ORT-specific ops the builder emits; load it in ORT instead.)
    import onnxruntime

    onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (replaced)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int4", "int8"])
    ap.add_argument("--keep-temp", action="store_true", help="keep the intermediate HF folder")
    args = ap.parse_args(argv)

    out_dir: Path = args.output.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="tiny-chat-build-"))
    try:
        hf_dir = tmp / "hf"
        hf_dir.mkdir()
        vocab_size = train_tokenizer(hf_dir)
        print(f"tokenizer vocab size: {vocab_size}")
        make_hf_model(hf_dir, vocab_size, args.seed)

        stage = tmp / "onnx"
        run_builder(hf_dir, stage, tmp / "cache", args.precision)
        finalize(stage)
        banned = unprintable_token_ids(stage / "tokenizer.json")
        print(f"masking {len(banned)} unprintable token ids out of the output")
        mask_logits(stage / "model.onnx", banned, vocab_size)

        # Keep README.md (hand-written) if present; replace everything else.
        readme = out_dir / "README.md"
        readme_text = readme.read_text() if readme.exists() else None
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(stage, out_dir)
        if readme_text is not None:
            readme.write_text(readme_text)
    finally:
        if args.keep_temp:
            print(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    total = 0
    for p in sorted(out_dir.iterdir()):
        size = p.stat().st_size
        total += size
        print(f"{size:>10}  {p.name}")
    print(f"{total:>10}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
