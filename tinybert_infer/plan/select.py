"""`--backend auto`: the fastest artefact of a precision, chosen by measuring the candidates on this machine.

fp32 (the default) chooses among exact artefacts only (ORT as exported, ORT after its BERT fusions, OpenVINO
with f32 pinned), so labels stay PyTorch's. int8/bf16 are opt-in. The choice is cached beside the model in
tinybert_backend_choice.json, keyed by the model file's sha256, batch, threads, precision, CPU and library
versions, so the measurement runs once per machine and model.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Callable, Optional

from tinybert_infer.backends.base import Backend, WrappedBackend
from tinybert_infer.errors import UsageError
from tinybert_infer.fsutil import model_sha256, write_json_atomic
from tinybert_infer.layout import IDS_NAME, MASK_NAME, SELECTION_CACHE_NAME, require_model
from tinybert_infer.plan.planner import PRECISIONS, SWITCH_MARGIN
from tinybert_infer.machine import cpu_key, default_threads
from tinybert_infer.export.optimize import FP32_CANDIDATES, artefact_path, build_artefacts, make_variant_backend, nncf_available
from tinybert_infer.plan.timing import SELECT_ROUND, TimingPolicy, measure_backend

DEFAULT_BATCH_FOR_DYNAMIC = 8
SELECT_ROUNDS = 3
# Kept unless another candidate is faster by more than SWITCH_MARGIN: the one that won the full benchmark's
# rows on the 2-core machine, so noise on a busy machine does not flip the choice (issue 10).
PREFERRED = {"fp32": "openvino-fp32", "int8": "openvino-int8", "bf16": "openvino-bf16"}


def candidates_for(precision: str) -> list[str]:
    if precision == "fp32":
        return list(FP32_CANDIDATES)
    if precision == "bf16":
        return ["openvino-bf16"]
    if precision == "int8":
        return ["onnxruntime-int8-dynamic"] + (["openvino-int8"] if nncf_available() else [])
    raise UsageError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")


def runtime_versions_key() -> str:
    """The runtime versions a measured choice holds for (a cache written under others is measured again).
    Read from the installed distribution where it has the module's name: importing OpenVINO only for its
    version cost a cached run whose plan is ONNX Runtime's ~0.1 s. Other builds (onnxruntime-gpu) are imported."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    def installed(module: str) -> str:
        try:
            return version(module)
        except PackageNotFoundError:
            return importlib.import_module(module).__version__

    return f"ort{installed('onnxruntime')}-ov{installed('openvino').split('-')[0]}"


def cache_key(sim: Path, batch: int, threads: int, precision: str) -> str:
    return "|".join([model_sha256(sim)[:16], f"bs{batch}", f"threads{threads}", precision, cpu_key(), runtime_versions_key()])


def read_selection_cache(path: Path) -> dict:
    """The cached choices of `auto` and of the planner, {} when absent or damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or damaged: measure again, never fail the run for a cache
    return data if isinstance(data, dict) else {}


class SelectedBackend(WrappedBackend):
    """The chosen backend, recording in every summary what was chosen, among what, and why."""

    def __init__(self, inner: Backend, variant: str, precision: str, selection: dict):
        super().__init__(inner)
        self.variant = variant
        self.name = f"auto:{variant}"
        self.selection = dict(selection, precision=precision)

    def describe(self) -> dict:
        info = self.inner.describe()
        # "backend" stays the runtime that ran (as for an explicit choice); how it was chosen is added beside it.
        info.update(selected_by="auto", variant=self.variant, selection=self.selection)
        return info


def calibration_loader(checkpoint_dir, tsv, batch: int, packed_rows: Optional[int] = None):
    """INT8 calibration batches from tsv (never the scored data), made only when an artefact needs them.
    packed_rows: for the packed graph, the same sentences packed into runs of that many rows."""
    def load():
        from tinybert_infer.errors import PipelineError
        from tinybert_infer.export.optimize import calibration_batches, calibration_features
        from tinybert_infer.data.features import synthetic_feeds

        try:
            feats, _ = calibration_features(checkpoint_dir, tsv, max(128, batch), 64)
        except PipelineError:  # no readable checkpoint/TSV at hand: calibrate on synthetic sequences
            feats = synthetic_feeds(max(128, batch))
        if packed_rows:
            from tinybert_infer.run.length import real_lengths
            from tinybert_infer.run.packing import packed_feeds, plan_packed_batches

            lengths = real_lengths(feats[MASK_NAME])
            width = feats[IDS_NAME].shape[1]
            return [packed_feeds(feats, lengths, b, width) for b in plan_packed_batches(lengths, packed_rows, width=width)
                    if len(b.rows) == packed_rows]
        return calibration_batches(feats, batch)[:max(1, 128 // batch)]
    return load


def has_dynamic_sequence(onnx_path) -> bool:
    """Whether the model's first input has a symbolic sequence axis (TinyBERT_sim_dyn.onnx) or a fixed one
    (False when unreadable: loading it into a runtime reports that, as one line, right after)."""
    from tinybert_infer.onnxfile import read_input_dims

    dims = next(iter((read_input_dims(onnx_path) or {}).values()), [])
    return len(dims) > 1 and not isinstance(dims[1], int)


def choose_backend(sim_path, *, batch_size: Optional[int] = None, threads: Optional[int] = None,
                   precision: str = "fp32", checkpoint_dir=None, calibration_tsv=None,
                   policy: TimingPolicy = SELECT_ROUND, log: Callable[[str], None] = print) -> SelectedBackend:
    sim = Path(sim_path)
    names = candidates_for(precision)
    threads = threads or default_threads()
    require_model(sim)
    # A dynamic-shape model is timed on the varied widths length-aware batching feeds it, each runtime with the
    # streams it would run them with (dynamic.default_streams); a static one at 64.
    varied = has_dynamic_sequence(sim)

    def streams_for(name: str) -> int:
        from tinybert_infer.run.length import default_streams
        from tinybert_infer.export.optimize import variant

        return default_streams(variant(name).runtime, threads, varied)

    cache_file = sim.parent / SELECTION_CACHE_NAME
    cache = read_selection_cache(cache_file)
    probe_batch = batch_size or DEFAULT_BATCH_FOR_DYNAMIC
    key = cache_key(sim, probe_batch, threads, precision)
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("variant") in names:
        name = entry["variant"]
        path = artefact_path(sim, name)
        if path is None or path.is_file():
            backend = make_variant_backend(name, path, threads=threads, batch_size=batch_size,
                                           streams=streams_for(name))
            return SelectedBackend(backend, name, precision, dict(entry, cached=True, cache_file=str(cache_file)))


    def time_fn(_name, path):
        candidate = make_variant_backend(_name, path, threads=threads, batch_size=batch_size,
                                         streams=streams_for(_name))
        return measure_backend(candidate, candidate.batch_size or probe_batch, policy,
                               varied_widths=varied)["samples_per_s"]

    artefacts = build_artefacts(sim, names, batch_size=probe_batch, threads=threads, time_fn=time_fn,
                                calibration=calibration_loader(checkpoint_dir, calibration_tsv, probe_batch),
                                log=log)
    # Interleaved rounds (A B C, A B C, ...) and the median of each: load from other processes hits every
    # candidate alike; the preferred one is kept unless another beats it by more than the margin (plan.pick).
    backends = {name: make_variant_backend(name, artefact.path, threads=threads, batch_size=batch_size,
                                           streams=streams_for(name)) for name, artefact in artefacts.items()}
    rounds = {name: [] for name in backends}
    for _ in range(SELECT_ROUNDS):
        for name, backend in backends.items():
            rounds[name].append(measure_backend(backend, backend.batch_size or probe_batch, policy,
                                                varied_widths=varied)["samples_per_s"])
    measured = {name: round(statistics.median(values), 1) for name, values in rounds.items()}
    for name, rate in measured.items():
        log(f"[auto] {name}: median {rate:.1f} samples/s over {SELECT_ROUNDS} interleaved rounds "
            f"(bs {backends[name].batch_size or probe_batch}, {threads} threads)")
    best = None
    if measured:
        preferred = PREFERRED.get(precision) if PREFERRED.get(precision) in measured else next(iter(measured))
        fastest = max(measured, key=measured.get)
        best = fastest if measured[fastest] > measured[preferred] * (1.0 + SWITCH_MARGIN) else preferred
    for name, backend in backends.items():
        if name != best:
            backend.close()
    best_backend = backends.get(best)
    if best is None:
        raise UsageError(f"no {precision} artefact could be built for {sim}")
    entry = {"variant": best, "samples_per_s": measured, "batch": probe_batch, "threads": threads,
             "artefact": str(artefacts[best].path), "rounds": SELECT_ROUNDS, "margin": SWITCH_MARGIN}
    cache[key] = entry
    try:
        write_json_atomic(cache_file, cache)
    except OSError:
        pass  # a read-only model folder: the choice is simply measured again next time
    log(f"[auto] chose {best} for {precision} (cached in {cache_file})")
    return SelectedBackend(best_backend, best, precision, dict(entry, cached=False, cache_file=str(cache_file)))
