"""Runtimes: one module per kind of model (edge check, estimate, execution, rendering) and the registry that
resolves a deployment to its loaded runtime. ONNX Runtime is imported only inside `engines/`."""
