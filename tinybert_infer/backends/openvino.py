"""OpenVINO on the CPU, with the precision pinned: its CPU plugin silently runs bf16 on CPUs with AVX512-BF16
unless told INFERENCE_PRECISION_HINT=f32, which would make an "fp32" figure something else."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ExportError, UsageError
from .base import Backend

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def _static_dim(dim) -> Optional[int]:
    return dim.get_length() if dim.is_static else None


class OpenVinoBackend(Backend):
    """model_path: an ONNX file or an OpenVINO IR (.xml; e.g. NNCF's INT8, whose int8 lives in the graph)."""

    name = "openvino"

    def __init__(self, model_path, *, threads: Optional[int] = None, precision: str = "fp32"):
        import openvino as ov

        if precision not in PRECISION_HINTS:
            raise UsageError(f"OpenVINO precision {precision!r}: use one of {', '.join(PRECISION_HINTS)}")
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ExportError(f"{self.model_path}: model not found")
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",  # one stream: a batch uses every thread, like the other backends
            "NUM_STREAMS": 1,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            model = core.read_model(str(self.model_path))
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise ExportError(f"{self.model_path}: OpenVINO cannot load it ({str(exc).splitlines()[0][:160]})") from None
        self.request = self.compiled.create_infer_request()
        inputs = self.compiled.inputs
        self.input_names = [i.get_any_name() for i in inputs]
        shape = inputs[0].get_partial_shape()
        self.batch_size = _static_dim(shape[0])
        self.seq_len = _static_dim(shape[1]) if shape.rank.get_length() > 1 else None
        self.precision = precision
        self.threads = threads
        self._version = ov.__version__
        # What the plugin actually uses, read back rather than assumed.
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.effective_precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        self.effective_threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))

    def run(self, feeds):
        self.request.infer({n: np.ascontiguousarray(feeds[n]) for n in self.input_names})
        return self.request.get_output_tensor(0).data.copy()

    def describe(self) -> dict:
        info = super().describe()
        info.update(artefact=str(self.model_path), openvino=self._version, precision=self.precision,
                    inference_precision_hint=self.effective_precision, threads=self.effective_threads)
        return info
