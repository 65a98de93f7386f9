"""OpenVINO on the CPU, with the precision pinned: its CPU plugin silently runs bf16 on CPUs with AVX512-BF16
unless told INFERENCE_PRECISION_HINT=f32, which would make an "fp32" figure something else."""

from __future__ import annotations

from collections import deque
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

    def __init__(self, model_path, *, threads: Optional[int] = None, precision: str = "fp32", streams: int = 1):
        """streams > 1 splits the threads into that many streams, each running its own batch (run_pipelined);
        run() then uses one stream, so a caller timing single batches should keep the default 1."""
        import openvino as ov

        if precision not in PRECISION_HINTS:
            raise UsageError(f"OpenVINO precision {precision!r}: use one of {', '.join(PRECISION_HINTS)}")
        if streams < 1 or (threads and streams > threads):
            raise UsageError(f"--streams {streams}: use 1 to the thread count ({threads or 'all cores'})")
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ExportError(f"{self.model_path}: model not found")
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
            "NUM_STREAMS": int(streams),
        }
        if streams == 1:
            config["PERFORMANCE_HINT"] = "LATENCY"  # one stream: a batch uses every thread, like the other backends
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            model = core.read_model(str(self.model_path))
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise ExportError(f"{self.model_path}: OpenVINO cannot load it ({str(exc).splitlines()[0][:160]})") from None
        self.request = self.compiled.create_infer_request()
        self.streams = int(streams)
        self._requests = [self.request] + [self.compiled.create_infer_request() for _ in range(self.streams - 1)]
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

    def _inputs(self, feeds):
        return {n: np.ascontiguousarray(feeds[n]) for n in self.input_names}

    def run(self, feeds):
        self.request.infer(self._inputs(feeds))
        return self.request.get_output_tensor(0).data.copy()

    def run_pipelined(self, items):
        """Up to `streams` batches in flight, results yielded in submission order. Length-aware batches are
        narrow (M = batch x ~26 rows), where two single-thread streams beat one two-thread GEMM."""
        if self.streams == 1:
            yield from super().run_pipelined(items)
            return
        idle, in_flight = list(self._requests), deque()

        def finish():
            request, tag = in_flight.popleft()
            request.wait()
            idle.append(request)
            return tag, request.get_output_tensor(0).data.copy(), float(request.latency)

        try:
            for feeds, tag in items:
                if not idle:
                    yield finish()
                request = idle.pop()
                request.start_async(self._inputs(feeds))
                in_flight.append((request, tag))
            while in_flight:
                yield finish()
        finally:
            for request, _ in in_flight:  # an abandoned run (error, Ctrl-C): let started work end cleanly
                request.wait()

    def describe(self) -> dict:
        info = super().describe()
        info.update(artefact=str(self.model_path), openvino=self._version, precision=self.precision,
                    inference_precision_hint=self.effective_precision, threads=self.effective_threads,
                    streams=self.streams)
        return info
