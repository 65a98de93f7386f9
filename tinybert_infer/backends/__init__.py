"""Inference backends; each writes results through the same ais_bench-layout driver."""

from __future__ import annotations

from tinybert_infer.backends.base import Backend

BACKENDS = ("auto", "onnxruntime", "openvino", "torch", "onnxruntime-cuda", "onnxruntime-tensorrt")


def make_backend(name: str, *, onnx_path=None, checkpoint_dir=None, batch_size=None, threads=None,
                 precision: str = "fp32", streams: int = 1, head=None) -> Backend:
    """streams: OpenVINO execution streams (batches in flight); other runtimes take 1 only.
    head: the classifier head (models/specs.py) for the PyTorch backend; an exported graph has its own built in."""
    from tinybert_infer.errors import UsageError

    if head is not None and name != "torch":
        raise UsageError("--head applies to --backend torch only: an exported graph has its head built in "
                         "(give --head to export instead)")
    if streams != 1 and name != "openvino":
        raise UsageError(f"--streams {streams}: only --backend openvino runs several batches at once")
    if name == "auto":  # the fastest artefact of this precision, measured here (tinybert_infer/plan/select.py)
        import sys

        from tinybert_infer.plan.select import choose_backend

        return choose_backend(onnx_path, batch_size=batch_size, threads=threads, precision=precision,
                              checkpoint_dir=checkpoint_dir, log=lambda s: print(s, file=sys.stderr))
    if precision != "fp32" and name != "openvino":
        raise UsageError(f"--precision {precision} needs --backend auto (or openvino for bf16)")
    if name == "openvino" and precision == "int8":
        raise UsageError("--precision int8 needs --backend auto (it builds the INT8 artefacts)")
    if name in ("openvino", "onnxruntime", "torch"):
        return open_runtime(name, onnx_path, threads=threads, precision=precision, streams=streams,
                            checkpoint_dir=checkpoint_dir, batch_size=batch_size, head=head)
    from tinybert_infer.backends.gpu import GPU_PROVIDERS

    if name in GPU_PROVIDERS:
        from tinybert_infer.backends.gpu import OrtGpuBackend

        return OrtGpuBackend(onnx_path, backend=name, threads=threads)
    raise UsageError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")


def open_runtime(runtime: str, model, *, threads=None, precision: str = "fp32", streams: int = 1, checkpoint_dir=None,
                 batch_size=None, head=None) -> Backend:
    """The one place a CPU runtime is constructed: make_backend (the CLI's names, checked) and
    optimize.make_variant_backend (an artefact variant) both come here.
    precision: OpenVINO's hint (fp32 or bf16); streams: OpenVINO's batches in flight."""
    if runtime == "openvino":
        from tinybert_infer.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(model, threads=threads, precision=precision, streams=streams)
    if runtime == "onnxruntime":
        from tinybert_infer.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, threads=threads)
    from tinybert_infer.backends.torch_eager import TorchBackend

    return TorchBackend(checkpoint_dir, batch_size=batch_size, threads=threads, head=head)
