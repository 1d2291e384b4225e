"""Model engines: ONNX Runtime, onnxruntime-genai, scoring scripts, prompt token counts. Imported lazily."""
