"""One way to open an ONNX model for serving on the CPU, for every kind that runs plain ONNX Runtime sessions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime


def cpu_session(model: Path, intra_op_threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    # ORT's pool threads spin between runs by default: right for a loop that only runs the model, wrong in a
    # server, where they take the cores the HTTP side and the worker need between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
