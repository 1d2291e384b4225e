"""Runners: small classes with `load()` and `predict(batch)`. ONNX Runtime is imported only inside them."""
