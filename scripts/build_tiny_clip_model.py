#!/usr/bin/env python3
"""Build the tiny random-weight CLIP-style model used as a test fixture (kind `image-embeddings`).

What it is
----------
A CLIP model with *random* weights (fixed seed), a few hundred KB, as the folder the `image-embeddings` runtime
serves: ``vision_model.onnx`` (``pixel_values`` → ``image_embeds``), ``text_model.onnx`` (``input_ids``,
``attention_mask`` → ``text_embeds``), ``preprocessor_config.json`` (Hugging Face ``CLIPImageProcessor`` shape:
resize the shortest side, center crop, rescale, mean/std normalise), ``tokenizer.json`` (a byte-level BPE trained
on the few lines in ``CORPUS``, with ``<|startoftext|>``/``<|endoftext|>`` around every text, as CLIP's) and
``config.json`` (the ``CLIPConfig``: image and patch size, projection dimension). Images and texts land in one
32-dimension space; its similarities mean nothing (random weights), the code paths are the real ones.

``reference.json`` holds what ``transformers`` itself computes for a fixed 32×32 image (already the model's size,
so resizing and cropping are the identity) and two texts: the normalised vectors and token counts, which the
tests compare the ONNX runtime's against.

How to run
----------
The build needs torch and transformers, which are NOT runtime dependencies of the app::

    /tmp/buildvenv/bin/pip install -r requirements-build-model.txt
    /tmp/buildvenv/bin/python scripts/build_tiny_clip_model.py [--output config/demo/tiny-clip] [--seed 0]

``--hf-model FOLDER`` exports a real CLIP (a Hugging Face folder, e.g. ``openai/clip-vit-base-patch32``
downloaded beforehand) into the same layout instead: its own tokenizer.json and preprocessor_config.json are
copied, its towers exported the same way (see the README's "Image embeddings").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "config" / "demo" / "tiny-clip"

BOS, EOS = "<|startoftext|>", "<|endoftext|>"  # ids 0 and 1; the padding is EOS, as CLIP's
CONTEXT = 77  # CLIP's text context
IMAGE_SIZE, PATCH_SIZE = 32, 8  # 16 patches + 1 class token = 17 tokens an image
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
OPSET = 18

CORPUS = """\
a photo of a cat sitting on a red chair
a photo of a dog running in the green park
a drawing of a house with a blue door and two windows
a picture of the sea at sunset, orange sky and dark water
an image of a bicycle leaning against a white wall
a close up photo of a flower with yellow petals
a black and white photo of a city street at night
a diagram with arrows, boxes and numbers one two three
"""


def train_tokenizer(out: Path, vocab_size: int = 400) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.lower().splitlines(), trainer=trainer)
    assert (tok.token_to_id(BOS), tok.token_to_id(EOS)) == (0, 1)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A {EOS}", special_tokens=[(BOS, 0), (EOS, 1)])
    tok.save(str(out / "tokenizer.json"))
    return int(tok.get_vocab_size())


def preprocessor_config(image_size: int) -> dict[str, Any]:
    """What `CLIPImageProcessor.save_pretrained` writes for CLIP, at this image size."""
    return {
        "crop_size": {"height": image_size, "width": image_size},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": CLIP_MEAN,
        "image_processor_type": "CLIPImageProcessor",
        "image_std": CLIP_STD,
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": image_size},
    }


def tiny_model(vocab_size: int, seed: int) -> Any:
    import numpy as np
    import torch
    from transformers import CLIPConfig, CLIPModel

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": CONTEXT,
            "bos_token_id": 0,
            "eos_token_id": 1,  # not 2: pooled at the first EOS, not at the highest id (CLIP's legacy rule)
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        projection_dim=32,
    )
    config._attn_implementation = "eager"
    return CLIPModel(config).eval()


class _Towers:
    """The two towers as modules of their own (what CLIPTextModelWithProjection / CLIPVisionModelWithProjection
    compute), taken from one CLIPModel so both share its projection space."""

    def __init__(self, clip: Any) -> None:
        import torch

        class Text(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.text_model, self.text_projection = clip.text_model, clip.text_projection

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
                return self.text_projection(out.pooler_output)

        class Vision(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.vision_model, self.visual_projection = clip.vision_model, clip.visual_projection

            def forward(self, pixel_values: Any) -> Any:
                return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)

        self.text, self.vision = Text().eval(), Vision().eval()


def export(clip: Any, out: Path, image_size: int) -> None:
    import torch

    towers = _Towers(clip)
    ids = torch.tensor([[0, 5, 6, 7, 1], [0, 8, 1, 1, 1]], dtype=torch.int64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.int64)
    pixels = torch.zeros(2, 3, image_size, image_size)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=CONTEXT)
    with torch.no_grad():
        torch.onnx.export(
            towers.text,
            (ids, mask),
            str(out / "text_model.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["text_embeds"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
        )
        torch.onnx.export(
            towers.vision,
            (pixels,),
            str(out / "vision_model.onnx"),
            input_names=["pixel_values"],
            output_names=["image_embeds"],
            dynamic_shapes={"pixel_values": {0: batch}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
        )


def strip_metadata(path: Path) -> None:
    """Drop what the exporter records per node (stack traces with this script's line numbers, FX names): the
    files then depend only on the weights and the graph, so a rebuild is byte-identical."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for info in (*model.graph.input, *model.graph.output, *model.graph.value_info, *model.graph.initializer):
        del info.metadata_props[:]
    del model.metadata_props[:]
    onnx.save(model, str(path))


def reference(clip: Any, out: Path) -> dict[str, Any]:
    """transformers' own vectors for a fixed image and texts: what the ONNX runtime must reproduce."""
    import numpy as np
    import torch
    from tokenizers import Tokenizer

    size = clip.config.vision_config.image_size
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.stack([xx * 255 // (size - 1), yy * 255 // (size - 1), (xx + yy) * 255 // (2 * size - 2)], -1)
    rgb = rgb.astype(np.uint8)  # the test draws the same gradient as a PNG
    pixels = (rgb.astype(np.float32) / 255 - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    pixel_values = torch.from_numpy(pixels.transpose(2, 0, 1)[None].copy())
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    texts = ["a photo of a cat", "a diagram with arrows, boxes and numbers one two three"]
    encodings = [tok.encode(t) for t in texts]
    width = max(len(e.ids) for e in encodings)
    ids = torch.tensor([e.ids + [1] * (width - len(e.ids)) for e in encodings])
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in encodings])
    with torch.no_grad():
        image = clip.get_image_features(pixel_values=pixel_values)
        text = clip.get_text_features(input_ids=ids, attention_mask=mask)
    image, text = (getattr(x, "pooler_output", x) for x in (image, text))  # transformers 5 may wrap them

    def unit(x: Any) -> list[list[float]]:
        return [[round(float(v), 6) for v in row] for row in torch.nn.functional.normalize(x, dim=-1)]

    return {
        "image": {"gradient_rgb_size": size, "embedding": unit(image)[0], "tokens": (size // PATCH_SIZE) ** 2 + 1},
        "texts": [
            {"text": t, "embedding": v, "tokens": len(e.ids)}
            for t, v, e in zip(texts, unit(text), encodings, strict=True)
        ],
    }


def check_onnx(out: Path, ref: dict[str, Any]) -> None:
    """The exported towers give transformers' vectors (the reference) in ONNX Runtime."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    size = ref["image"]["gradient_rgb_size"]
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.stack([xx * 255 // (size - 1), yy * 255 // (size - 1), (xx + yy) * 255 // (2 * size - 2)], -1)
    pixels = (rgb.astype(np.uint8).astype(np.float32) / 255 - np.array(CLIP_MEAN, np.float32)) / np.array(
        CLIP_STD, np.float32
    )
    vision = ort.InferenceSession(str(out / "vision_model.onnx"), providers=["CPUExecutionProvider"])
    (image,) = vision.run(None, {"pixel_values": pixels.transpose(2, 0, 1)[None].astype(np.float32)})
    image = image / np.linalg.norm(image, axis=-1, keepdims=True)
    assert np.allclose(image[0], ref["image"]["embedding"], atol=1e-4), "vision tower differs from transformers"
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    text = ort.InferenceSession(str(out / "text_model.onnx"), providers=["CPUExecutionProvider"])
    for item in ref["texts"]:
        e = tok.encode(item["text"])
        (v,) = text.run(None, {"input_ids": np.array([e.ids]), "attention_mask": np.array([e.attention_mask])})
        v = v / np.linalg.norm(v, axis=-1, keepdims=True)
        assert np.allclose(v[0], item["embedding"], atol=1e-4), "text tower differs from transformers"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (replaced, README.md kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hf-model", type=Path, help="export this Hugging Face CLIP folder instead of the tiny one")
    args = ap.parse_args(argv)

    import torch

    torch.use_deterministic_algorithms(True)
    out: Path = args.output.resolve()
    stage = Path(tempfile.mkdtemp(prefix="tiny-clip-build-"))
    try:
        if args.hf_model:
            from transformers import CLIPModel

            clip = CLIPModel.from_pretrained(str(args.hf_model), attn_implementation="eager").eval()
            for name in ("tokenizer.json", "preprocessor_config.json"):
                shutil.copy(args.hf_model / name, stage / name)
            image_size = clip.config.vision_config.image_size
        else:
            vocab = train_tokenizer(stage)
            clip = tiny_model(vocab, args.seed)
            image_size = IMAGE_SIZE
            processor = json.dumps(preprocessor_config(image_size), indent=2)
            (stage / "preprocessor_config.json").write_text(processor + "\n")
        clip.config.to_json_file(str(stage / "config.json"))
        export(clip, stage, image_size)
        for tower in ("text_model.onnx", "vision_model.onnx"):
            strip_metadata(stage / tower)
        if not args.hf_model:
            ref = reference(clip, stage)
            (stage / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
            check_onnx(stage, ref)
        readme = out / "README.md"
        readme_text = readme.read_text() if readme.exists() else None
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(stage, out)
        if readme_text is not None:
            readme.write_text(readme_text)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

    print("files (name = sha256), for the deployment's [deployments.model] files:")
    for p in sorted(out.iterdir()):
        if p.name not in ("README.md", "reference.json"):
            print(f'  "{p.name}" = "{hashlib.sha256(p.read_bytes()).hexdigest()}"  # {p.stat().st_size} bytes')
    return 0


if __name__ == "__main__":
    sys.exit(main())
