"""Prompt token counts at the HTTP edge, without onnxruntime-genai: the model folder's tokenizer.json
(`tokenizers`) and its chat template (jinja2, rendered the way `transformers` renders it). The worker's count,
from genai's own tokenizer, is the one that bills and the one that finally decides."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.domain.errors import ConfigError
from shared.runtimes.engines.genai import ModelLimits

# The files the edge needs from a generation model folder (small; the weights stay with the workers).
EDGE_FILES = ("genai_config.json", "tokenizer.json", "tokenizer_config.json")


class PromptCounter:
    def __init__(self, model_dir: Path) -> None:
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        self.context_length = ModelLimits.read(model_dir).context_length
        try:
            self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises its own Exception subclass
            raise ConfigError(f"{model_dir}/tokenizer.json does not load: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        # A token stands for at most this many characters of text (byte-level vocabularies spell one byte a
        # character): what lets a prompt too long for the context be refused without tokenizing it. It assumes
        # the tokenizer drops no text (true of byte-level BPE and SentencePiece, what generation models use).
        self.max_token_chars = max(len(t) for t in self._tokenizer.get_vocab(with_added_tokens=True))
        self._lock = threading.Lock()
        config = _read_json(model_dir / "tokenizer_config.json")
        self._specials = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        self._template_error = TemplateError
        self._template: Any = None
        source = config.get("chat_template")
        if isinstance(source, str):
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
            env.globals["raise_exception"] = _raise
            try:
                self._template = env.from_string(source)
            except TemplateError:
                self._template = None  # the worker's genai tokenizer renders it; the edge doesn't count

    def count_chat(self, messages: Sequence[dict[str, str]]) -> int | None:
        """Tokens of the rendered chat prompt; None when the template can't be rendered here."""
        if self._template is None:
            return None
        try:
            prompt = self._template.render(messages=list(messages), add_generation_prompt=True, **self._specials)
        except (self._template_error, ValueError):
            return None
        return self._count(prompt, add_special_tokens=False)  # the template writes its own special tokens

    def count_text(self, text: str) -> int:
        return self._count(text, add_special_tokens=True)

    def _count(self, text: str, add_special_tokens: bool) -> int:
        with self._lock:
            return len(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # {"content": "<s>", ...} in some tokenizer configs
        value = value.get("content")
    return value if isinstance(value, str) else ""


def _raise(message: str) -> None:
    raise ValueError(message)
