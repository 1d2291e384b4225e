"""The server a user would write in an afternoon: FastAPI + ONNX Runtime, one request = one session run, default
ORT threads, uvicorn. The peer row of `scripts/bench.py`; not part of the product.
    python scripts/peer_server.py --model-dir models/all-MiniLM-L6-v2-int8 --port 8000
"""

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from tokenizers import Tokenizer

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model-dir", type=Path, default=Path("models/all-MiniLM-L6-v2-int8"))
parser.add_argument("--port", type=int, default=8000)
args = parser.parse_args()

tokenizer = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
tokenizer.enable_truncation(max_length=256)
session = ort.InferenceSession(str(args.model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
names = {i.name for i in session.get_inputs()}
app = FastAPI()


class Body(BaseModel):
    input: str | list[str]


@app.post("/embeddings")
def embeddings(body: Body) -> dict:
    encodings = tokenizer.encode_batch([body.input] if isinstance(body.input, str) else body.input)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    hidden = session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    vectors = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "usage": {"prompt_tokens": int(mask.sum())}}


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
