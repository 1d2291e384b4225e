"""A CLIP-style model on ONNX Runtime (CPU): a vision tower and a text tower projecting into one space.

The folder: `vision_model.onnx` (`pixel_values` [N, 3, H, W] → image embeddings [N, D]), `text_model.onnx`
(`input_ids`, and `attention_mask` when it takes one, → text embeddings [N, D]), `preprocessor_config.json`
(Hugging Face `CLIPImageProcessor`: resize the shortest side, center crop, rescale, mean/std normalise),
`tokenizer.json` and `config.json` (`CLIPConfig`: image and patch size, for the tokens an image counts).
Vectors come out L2-normalised. A batch may mix images and texts: each tower runs once for its share.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.domain.errors import ConfigError, ModelError
from shared.runtimes.engines.onnx_embeddings import Embedding
from shared.runtimes.engines.sessions import cpu_session

if TYPE_CHECKING:
    import onnxruntime
    from PIL.Image import Image
    from tokenizers import Encoding, Tokenizer

# PIL's resampling filters by the number HF configs store (`resample`: 3 is bicubic, CLIP's).
_RESAMPLE = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}


@dataclass(frozen=True)
class Pixels:
    """One image, preprocessed: [3, H, W] float32."""

    values: np.ndarray


@dataclass(frozen=True)
class Preprocessor:
    """`preprocessor_config.json`, as CLIPImageProcessor applies it."""

    resize: dict[str, int] | None
    resample: str
    crop: tuple[int, int] | None  # height, width
    rescale: float | None
    mean: np.ndarray | None
    std: np.ndarray | None

    @classmethod
    def read(cls, path: Path) -> Preprocessor:
        c = json.loads(path.read_text(encoding="utf-8"))
        crop = c.get("crop_size") if c.get("do_center_crop", False) else None
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        size = c.get("size") if c.get("do_resize", True) else None
        if isinstance(size, int):
            size = {"shortest_edge": size}
        normalize = c.get("do_normalize", True)
        return cls(
            resize=size,
            resample=_RESAMPLE.get(int(c.get("resample", 3)), "BICUBIC"),
            crop=(int(crop["height"]), int(crop["width"])) if crop else None,
            rescale=float(c.get("rescale_factor", 1 / 255)) if c.get("do_rescale", True) else None,
            mean=np.array(c["image_mean"], np.float32).reshape(3, 1, 1) if normalize else None,
            std=np.array(c["image_std"], np.float32).reshape(3, 1, 1) if normalize else None,
        )

    def __call__(self, image: Image) -> Pixels:
        from PIL import Image as PILImage

        if self.resize:
            image = image.resize(self._size(image.width, image.height), getattr(PILImage.Resampling, self.resample))
        if self.crop:
            height, width = self.crop
            top, left = (image.height - height) // 2, (image.width - width) // 2
            image = image.crop((left, top, left + width, top + height))  # zeros where it overhangs
        x = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)
        if self.rescale is not None:
            x = x * np.float32(self.rescale)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return Pixels(np.ascontiguousarray(x, dtype=np.float32))

    def _size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize: the shortest side to `shortest_edge` (the other in proportion,
        rounded down as transformers does), or `height` × `width` as given."""
        assert self.resize is not None
        if "shortest_edge" in self.resize:
            short = self.resize["shortest_edge"]
            if width <= height:
                return short, int(short * height / width)
            return int(short * width / height), short
        return self.resize["width"], self.resize["height"]


class ClipRunner:
    def __init__(self, model_dir: Path, max_tokens: int, intra_op_threads: int = 1) -> None:
        self.model_dir = model_dir
        self.max_tokens = max_tokens
        self.intra_op_threads = intra_op_threads
        self.preprocess: Preprocessor | None = None
        self.image_tokens = 0  # what one image counts: (image_size / patch_size)² patches + the class token
        self.dimensions = 0
        self._vision: onnxruntime.InferenceSession | None = None
        self._text: onnxruntime.InferenceSession | None = None
        self._text_inputs: set[str] = set()
        self._tokenizer: Tokenizer | None = None
        self._pad_id = 0
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._vision is not None:
                return
            from tokenizers import Tokenizer

            config = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
            vision = config.get("vision_config", {})
            try:
                image_size, patch_size = int(vision["image_size"]), int(vision["patch_size"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{self.model_dir}/config.json: no vision_config image_size and patch_size") from exc
            self.image_tokens = (image_size // patch_size) ** 2 + 1
            self.preprocess = Preprocessor.read(self.model_dir / "preprocessor_config.json")
            tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
            tokenizer.no_padding()  # each run is padded to its own longest text
            tokenizer.enable_truncation(max_length=self.max_tokens)
            text_config = config.get("text_config", {})
            self._pad_id = int(text_config.get("pad_token_id", text_config.get("eos_token_id", 0)) or 0)
            vision_session = cpu_session(self.model_dir / "vision_model.onnx", self.intra_op_threads)
            text_session = cpu_session(self.model_dir / "text_model.onnx", self.intra_op_threads)
            self._text_inputs = {i.name for i in text_session.get_inputs()}
            self.dimensions = int(config.get("projection_dim") or 0)
            self._tokenizer, self._text, self._vision = tokenizer, text_session, vision_session

    def tokenize(self, texts: Sequence[str]) -> list[Encoding]:
        """Each text's tokens (with the start and end tokens), truncated at `max_tokens`, unpadded."""
        self.load()
        assert self._tokenizer is not None
        return self._tokenizer.encode_batch(list(texts), add_special_tokens=True)

    def pixels(self, image: Image) -> Pixels:
        self.load()
        assert self.preprocess is not None
        return self.preprocess(image)

    def embed(self, items: Sequence[Pixels | Encoding]) -> list[Embedding]:
        """Unit vectors for preprocessed images and tokenized texts, in their order: each tower runs once."""
        self.load()
        out: list[Embedding | None] = [None] * len(items)
        images = [i for i, x in enumerate(items) if isinstance(x, Pixels)]
        texts = [i for i, x in enumerate(items) if not isinstance(x, Pixels)]
        if images:
            batch = np.stack([items[i].values for i in images])  # type: ignore[union-attr]
            vectors = self._run(self._vision, {"pixel_values": batch}, "image_embeds")
            for i, v in zip(images, vectors, strict=True):
                out[i] = Embedding(v, self.image_tokens)
        if texts:
            encodings: list[Encoding] = [items[i] for i in texts]  # type: ignore[misc]
            width = max(len(e.ids) for e in encodings)
            ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(encodings), width), dtype=np.int64)
            for row, e in enumerate(encodings):
                ids[row, : len(e.ids)], mask[row, : len(e.ids)] = e.ids, 1
            feeds = {k: v for k, v in (("input_ids", ids), ("attention_mask", mask)) if k in self._text_inputs}
            vectors = self._run(self._text, feeds, "text_embeds")
            for i, v, e in zip(texts, vectors, encodings, strict=True):
                out[i] = Embedding(v, len(e.ids))
        return [e for e in out if e is not None]

    @staticmethod
    def _run(session: Any, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
        """The tower's projected embeddings: the output of that name (exporters may add `last_hidden_state`), else
        its first."""
        names = [o.name for o in session.get_outputs()]
        try:
            (vectors,) = session.run([output if output in names else names[0]], feeds)
        except Exception as exc:  # onnxruntime raises its own types; the job fails with the reason
            raise ModelError(f"model run failed: {exc}") from exc
        v: np.ndarray = np.asarray(vectors, dtype=np.float32)
        unit: np.ndarray = v / np.clip(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12, None)
        return unit
