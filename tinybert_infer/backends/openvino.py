"""OpenVINO on the CPU, with the precision pinned: its CPU plugin silently runs bf16 on CPUs with AVX512-BF16
unless told INFERENCE_PRECISION_HINT=f32, which would make an "fp32" figure something else."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Optional

import numpy as np

from tinybert_infer.errors import ExportError, UsageError
from tinybert_infer.layout import require_model
from tinybert_infer.backends.base import Backend

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}
# Infer requests per stream in run_pipelined: one queued behind the running one, so a stream that finishes starts
# its next batch at once instead of waiting for the Python thread (busy writing the previous batch's result files,
# or preempted by the streams' own threads on a 2-core host). End to end, packed int8 with 2 streams, interleaved
# medians of 8 on a 2-core EPYC: shared checkpoint 1,077 -> 1,106 sentences/s, 4L-312D 2,043 -> 2,102.
REQUESTS_PER_STREAM = 2


def _static_dim(dim) -> Optional[int]:
    return dim.get_length() if dim.is_static else None


def cache_dir_for(cache_dir, precision: str) -> Path:
    """One model-cache folder per precision hint. OpenVINO 2026.4's cache key leaves the hint out: a bf16
    compile of a model that was compiled in f32 before imported the f32 blob and gave wrong logits (max 4.4
    off, on an AMX CPU) or crashed with two streams."""
    return Path(cache_dir) / PRECISION_HINTS[precision]


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
        self.model_path = require_model(model_path)
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
        self._requests = [self.request] + [self.compiled.create_infer_request()
                                           for _ in range(self.streams * REQUESTS_PER_STREAM - 1)]
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
        """Up to `streams` batches running and as many queued (REQUESTS_PER_STREAM), results yielded in submission
        order. Length-aware batches are narrow (M = batch x ~26 rows), where two single-thread streams beat one
        two-thread GEMM. A finished batch is handed out only once the next one is started, so the caller's work
        on it (writing its outputs) overlaps the runtime's, with one stream too."""
        idle, in_flight, ready = list(self._requests), deque(), deque()

        def finish():
            request, tag, _inputs = in_flight.popleft()
            request.wait()
            idle.append(request)
            ready.append((tag, request.get_output_tensor(0).data.copy(), float(request.latency)))

        try:
            for feeds, tag in items:
                if not idle:
                    finish()
                request = idle.pop()
                inputs = self._inputs(feeds)
                request.start_async(inputs, share_inputs=True)  # read in place: kept alive in in_flight
                in_flight.append((request, tag, inputs))
                while ready:
                    yield ready.popleft()
            while in_flight:
                finish()
                yield ready.popleft()
        finally:
            for request, *_ in in_flight:  # an abandoned run (error, Ctrl-C): let started work end cleanly
                request.wait()

    def describe(self) -> dict:
        info = super().describe()
        info.update(artefact=str(self.model_path), openvino=self._version, precision=self.precision,
                    inference_precision_hint=self.effective_precision, threads=self.effective_threads,
                    streams=self.streams)
        return info


class OpenVinoStaticShapes(Backend):
    """One dynamic-shape model, compiled once per static shape [batch_size, L] it meets and reused (the "buckets"
    shape policy). OpenVINO keeps its fastest kernels (bf16/AMX, NNCF int8) only for static shapes; compiled per
    shape they survive length-aware batching. A batch with fewer rows than batch_size gets filler copies of its
    first row (their outputs are dropped), so the number of compiles is bounded by the number of lengths fed.
    cache_dir: OpenVINO's model cache (compiled blobs, imported by a later run instead of compiling), one folder
    per precision hint; the plans run without it (imported blobs took 2.3x the memory of compiled ones)."""

    name = "openvino"

    def __init__(self, model_path, *, batch_size: int, threads: Optional[int] = None, precision: str = "fp32",
                 streams: int = 1, cache_dir=None):
        import openvino as ov

        if precision not in PRECISION_HINTS:
            raise UsageError(f"OpenVINO precision {precision!r}: use one of {', '.join(PRECISION_HINTS)}")
        if streams < 1 or (threads and streams > threads):
            raise UsageError(f"--streams {streams}: use 1 to the thread count ({threads or 'all cores'})")
        if batch_size < 1:
            raise UsageError(f"batch size must be a positive integer, got {batch_size}")
        self.model_path = require_model(model_path)
        self.core = ov.Core()
        if cache_dir is not None:
            self.core.set_property({"CACHE_DIR": str(cache_dir_for(cache_dir, precision))})
        try:
            self.model = self.core.read_model(str(self.model_path))
        except RuntimeError as exc:
            raise ExportError(f"{self.model_path}: OpenVINO cannot load it ({str(exc).splitlines()[0][:160]})") from None
        self.input_names = [i.get_any_name() for i in self.model.inputs]
        self.config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision], "NUM_STREAMS": int(streams)}
        if streams == 1:
            self.config["PERFORMANCE_HINT"] = "LATENCY"
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self.static_batch = int(batch_size)
        self.batch_size = None  # callers may feed fewer rows: filled up here
        self.seq_len = None
        # A fixed row width in the graph (the packed model's): what packed batching fills each row up to.
        self.row_width = _static_dim(self.model.inputs[0].get_partial_shape()[1])
        self.precision, self.threads, self.streams = precision, threads, int(streams)
        self.max_in_flight = self.streams * REQUESTS_PER_STREAM  # each compiled shape's request pool
        self.cache_dir = cache_dir
        self._compiled: dict = {}   # length -> (compiled model, its infer requests)
        self.compile_seconds = 0.0
        self._version = ov.__version__
        self.effective_precision = None

    def _requests_for(self, widths: tuple):
        """widths: each input's length, in input_names order (all equal but for the packed graph's cls_index)."""
        import time

        entry = self._compiled.get(widths)
        if entry is None:
            model = self.model.clone()
            model.reshape({name: [self.static_batch, width] for name, width in zip(self.input_names, widths)})
            start = time.perf_counter()
            try:
                compiled = self.core.compile_model(model, "CPU", self.config)
            except RuntimeError as exc:
                raise ExportError(f"{self.model_path}: OpenVINO cannot compile it at [{self.static_batch}, {widths[0]}] "
                                  f"({str(exc).splitlines()[0][:160]})") from None
            self.compile_seconds += time.perf_counter() - start
            if self.effective_precision is None:
                hint = compiled.get_property("INFERENCE_PRECISION_HINT")
                self.effective_precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)
            entry = (compiled, deque(compiled.create_infer_request() for _ in range(self.max_in_flight)))
            self._compiled[widths] = entry
        return entry[1]

    def _widths(self, feeds) -> tuple:
        """Each input's length, in input_names order: the key of its compiled shape."""
        return tuple(int(feeds[name].shape[1]) for name in self.input_names)

    def warm_for(self, feeds) -> bool:
        """Warm, and the shape of these feeds compiled already (a new length compiles on its first batch)."""
        return self.warm and self._widths(feeds) in self._compiled

    def _split(self, feeds):
        """(widths, chunks of at most static_batch rows, each filled up to it, with its real row count)."""
        rows = len(feeds[self.input_names[0]])  # every input is [rows, its width]
        widths = self._widths(feeds)
        for start in range(0, rows, self.static_batch):
            real = min(self.static_batch, rows - start)
            chunk = {}
            for name in self.input_names:
                part = feeds[name][start:start + real]
                if real < self.static_batch:
                    part = np.concatenate([part, np.repeat(part[:1], self.static_batch - real, axis=0)])
                chunk[name] = np.ascontiguousarray(part)
            yield widths, chunk, real

    def run(self, feeds):
        outs = []
        for widths, chunk, real in self._split(feeds):
            request = self._requests_for(widths)[0]
            request.infer(chunk)
            outs.append(request.get_output_tensor(0).data[:real].copy())
        return np.concatenate(outs)

    def run_pipelined(self, items):
        """Up to `streams` chunks running and as many queued (each compiled shape has its own requests); results
        in submission order."""
        import time

        in_flight: deque = deque()  # (request, pool, tag, rows, last chunk of its item, its input arrays)
        pending: dict = {}
        ready: deque = deque()      # finished items, handed out once the next chunk is started (see OpenVinoBackend)
        # Milliseconds per item = wall time since the previous item finished: with several in flight their
        # latencies overlap, and these add up to the run's wall time instead.
        clock = [None]

        def finish():
            request, pool, tag, real, last, _chunk = in_flight.popleft()
            request.wait()
            pending.setdefault(id(tag), []).append(request.get_output_tensor(0).data[:real].copy())
            pool.append(request)
            if last:
                now = time.perf_counter()
                ms, clock[0] = (now - clock[0]) * 1000.0, now
                ready.append((tag, np.concatenate(pending.pop(id(tag))), ms))

        try:
            for feeds, tag in items:
                if clock[0] is None:
                    clock[0] = time.perf_counter()
                chunks = list(self._split(feeds))
                for k, (widths, chunk, real) in enumerate(chunks):
                    pool = self._requests_for(widths)
                    while len(in_flight) >= self.max_in_flight or not pool:
                        finish()
                    request = pool.popleft()
                    # The request reads the chunk's arrays in place (no copy); in_flight keeps them alive until
                    # it has finished.
                    request.start_async(chunk, share_inputs=True)
                    in_flight.append((request, pool, tag, real, k == len(chunks) - 1, chunk))
                    while ready:
                        yield ready.popleft()
            while in_flight:
                finish()
                while ready:
                    yield ready.popleft()
        finally:
            for request, *_ in in_flight:
                request.wait()

    def describe(self) -> dict:
        info = super().describe()
        info.update(artefact=str(self.model_path), openvino=self._version, precision=self.precision,
                    inference_precision_hint=self.effective_precision, threads=self.threads, streams=self.streams,
                    shape_policy="static shape per length", static_batch=self.static_batch,
                    compiled_lengths=sorted({w[0] for w in self._compiled}), compile_seconds=round(self.compile_seconds, 3))
        return info
