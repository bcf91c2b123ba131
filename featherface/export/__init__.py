"""Deployment: ONNX and TorchScript export with parity checks, the CPU latency benchmark, and the
MLflow model registry."""
