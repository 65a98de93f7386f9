"""ONNX Runtime on CPU (default) or a GPU execution provider."""

from __future__ import annotations

from typing import Optional, Sequence

from tinybert_infer.layout import require_model
from tinybert_infer.backends.base import Backend


def _static_dim(dim) -> Optional[int]:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model_path, *, threads: Optional[int] = None, providers: Optional[Sequence] = None,
                 graph_optimization: str = "all"):
        import onnxruntime as ort

        self.model_path = require_model(model_path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = {
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_optimization]
        self.threads = threads
        self.session = ort.InferenceSession(
            str(self.model_path), options, providers=list(providers or ["CPUExecutionProvider"])
        )
        inputs = self.session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self.output_name = self.session.get_outputs()[0].name
        self.batch_size = _static_dim(inputs[0].shape[0])
        self.seq_len = _static_dim(inputs[0].shape[1]) if len(inputs[0].shape) > 1 else None
        self._ort_version = ort.__version__

    def run(self, feeds):
        return self.session.run([self.output_name], {n: feeds[n] for n in self.input_names})[0]

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            artefact=str(self.model_path),
            onnxruntime=self._ort_version,
            providers=self.session.get_providers(),
            threads=self.threads or "default",
        )
        return info
