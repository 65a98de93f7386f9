"""Inference backends; each writes results through the same ais_bench-layout driver."""

from __future__ import annotations

from .base import Backend

BACKENDS = ("onnxruntime", "torch", "ort-cuda", "ort-trt")  # GPU ones also as onnxruntime-gpu, ort-tensorrt


def make_backend(name: str, *, onnx_path=None, checkpoint_dir=None, batch_size=None, threads=None) -> Backend:
    from ..errors import UsageError

    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx_path, threads=threads)
    if name == "torch":
        from .torch_eager import TorchBackend

        return TorchBackend(checkpoint_dir, batch_size=batch_size, threads=threads)
    from .gpu import GPU_PROVIDERS, canonical_name

    if canonical_name(name) in GPU_PROVIDERS:
        from .gpu import OrtGpuBackend

        return OrtGpuBackend(onnx_path, backend=name, threads=threads)
    raise UsageError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
