"""Static-64 vs length-aware batching, side by side: end-to-end (files in, result folder out) on SST-2 dev.

    python -m tinybert_infer dynamic-bench [--backend onnxruntime|openvino|torch] [--batch_sizes 1,8,32,64]

For each batch size the same backend runs the static ModelZoo path (inference.run_files on
TinyBERT_sim_bsBS.onnx) and the length-aware path (dynamic.run_files_by_length on TinyBERT_sim_dyn.onnx)
over the same preprocessed files, alternately, `repeats` times; the best wall time of each is kept (other
processes on the machine only ever slow a run down). Both result folders are scored through postprocessing
and must give the same labels with logits within targets.DYNAMIC's tolerance, else the row fails.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from tinybert_infer.errors import UsageError
from tinybert_infer.layout import INPUT_NAMES
from tinybert_infer.bench.prepare import inputs_and_exports
from tinybert_infer.bench.verdicts import dynamic_target, parity

BATCH_SIZES = (1, 8, 32, 64)


def _wall(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _backend(name: str, onnx_path, checkpoint_dir, batch_size, threads, streams: int = 1):
    from tinybert_infer.backends import make_backend

    return make_backend(name, onnx_path=onnx_path, checkpoint_dir=checkpoint_dir, batch_size=batch_size,
                        threads=threads, streams=streams)


def compare_batch(backend_name: str, batch: int, *, bin_dir: Path, static_model: Optional[Path],
                  dynamic_model: Optional[Path], checkpoint_dir: Path, out_root: Path, threads: Optional[int] = None,
                  repeats: int = 2, pad_multiple: Optional[int] = None, buckets: Optional[Sequence[int]] = None,
                  log: Callable[[str], None] = lambda s: None) -> dict:
    """One row: both paths on the same backend and inputs, alternately; best wall time of each; accuracy check.

    Each path runs as `infer` would run it by default (dynamic.default_streams); where the length-aware path
    uses several OpenVINO streams, the static path is timed with those streams too and keeps its better time,
    so the ratio never credits the dynamic path with a setting the static one was denied.
    This is the function a benchmark calls for its "dynamic length" rows."""
    from tinybert_infer.run.length import default_streams, run_files_by_length
    from tinybert_infer.run.inference import run_files
    from tinybert_infer.eval.metrics import evaluate

    dirs = [bin_dir / name for name in INPUT_NAMES]
    dynamic_streams = default_streams(backend_name, threads, True)
    statics = {streams: _backend(backend_name, static_model, checkpoint_dir, batch, threads, streams)
               for streams in sorted({1, dynamic_streams})}
    dynamic = _backend(backend_name, dynamic_model, checkpoint_dir, None, threads, dynamic_streams)
    common = dict(batch_size=batch, outfmt="TXT", show_progress=False)
    fastest: dict = {}  # (mode, streams) -> best wall time
    folders = {}
    for rep in range(repeats):
        for mode, streams in [("static", n) for n in statics] + [("dynamic", dynamic_streams)]:
            name = f"{backend_name}_bs{batch}_{mode}_streams{streams}_{rep}"
            if mode == "static":
                report, seconds = _wall(lambda: run_files(statics[streams], dirs, out_root, output_dirname=name,
                                                          **common))
            else:
                report, seconds = _wall(lambda: run_files_by_length(
                    dynamic, dirs, out_root, output_dirname=name, pad_multiple=pad_multiple, buckets=buckets,
                    **common))
            folders.setdefault(mode, report)
            fastest[mode, streams] = min(fastest.get((mode, streams), float("inf")), seconds)
            log(f"  {name}: {seconds:.2f} s")
    static_seconds = {streams: t for (mode, streams), t in fastest.items() if mode == "static"}
    best = {"static": min(static_seconds.values()), "dynamic": fastest["dynamic", dynamic_streams]}
    scored = {mode: evaluate(report.result_dir, bin_dir, write=False) for mode, report in folders.items()}
    count = len(scored["static"].predictions)
    summary = folders["dynamic"].summary
    row = {
        "backend": backend_name, "batch": batch, "samples": count,
        "static_s": best["static"], "dynamic_s": best["dynamic"],
        "static_sps": count / best["static"], "dynamic_sps": count / best["dynamic"],
        "ratio": best["static"] / best["dynamic"],
        "streams": {"dynamic": dynamic_streams, "static_best": min(static_seconds, key=static_seconds.get),
                    "static_s_by_streams": {str(k): round(v, 3) for k, v in static_seconds.items()}},
        "real_tokens": summary["real_tokens"], "padded_tokens": summary["padded_tokens"],
        "static_tokens": summary["static_tokens"], "token_reduction": summary["padded_token_reduction"],
        "labels_equal": bool(np.array_equal(scored["static"].predictions, scored["dynamic"].predictions)),
        "max_logit_diff": float(np.max(np.abs(scored["static"].logits - scored["dynamic"].logits))),
        "accuracy_static": (scored["static"].metrics or {}).get("accuracy"),
        "accuracy_dynamic": (scored["dynamic"].metrics or {}).get("accuracy"),
        "padding": {"pad_multiple": pad_multiple, "buckets": list(buckets) if buckets else None},
    }
    row["parity"] = parity(row["labels_equal"], row["max_logit_diff"])
    for backend in (*statics.values(), dynamic):
        backend.close()
    return row


def run_dynamic_bench(*, model_dir: Path, tsv: Path, work: Path, batch_sizes: Sequence[int] = BATCH_SIZES,
                      backend_names: Sequence[str] = ("onnxruntime",), threads: Optional[int] = None,
                      repeats: int = 2, pad_multiple: Optional[int] = None, buckets: Optional[Sequence[int]] = None,
                      log: Callable[[str], None] = lambda s: None) -> list:
    """Rows for every backend x batch size; the exports are made once and shared by the backends."""
    if "auto" in backend_names:
        raise UsageError("name the backends (onnxruntime, openvino, torch): both paths must run on the same one")
    needs_onnx = any(b != "torch" for b in backend_names)
    bin_dir, static_models, dynamic_model = inputs_and_exports(work, model_dir, tsv, batch_sizes, needs_onnx=needs_onnx,
                                                               export_tsv=tsv, log=log)
    (work / "result").mkdir(parents=True, exist_ok=True)
    # A new folder per run: a rerun in the same --work never meets (or overwrites) an earlier run's results.
    out_root = Path(tempfile.mkdtemp(prefix=time.strftime("run_%Y%m%d_%H%M%S_"), dir=work / "result"))
    rows = []
    for backend_name in backend_names:
        for batch in batch_sizes:
            log(f"bs {batch}: static-64 vs dynamic length ({backend_name})")
            rows.append(compare_batch(backend_name, batch, bin_dir=bin_dir, static_model=static_models.get(batch),
                                      dynamic_model=dynamic_model, checkpoint_dir=model_dir,
                                      out_root=out_root, threads=threads, repeats=repeats,
                                      pad_multiple=pad_multiple, buckets=buckets, log=log))
    return rows


# The benchmark's exact-fp32 variants that have a dynamic-shape counterpart here (PyTorch eager is left to
# `python -m tinybert_infer dynamic-bench --backend torch`: it would double the benchmark's run time).
RUNTIME_OF_VARIANT = {"onnxruntime": "onnxruntime", "openvino-fp32": "openvino"}


def dynamic_length_section(variant_names: Sequence[str], *, model_dir: Path, tsv: Path, work: Path,
                           batch_sizes: Sequence[int], threads: Optional[int] = None, repeats: int = 1,
                           log: Callable[[str], None] = lambda s: None) -> dict:
    """The benchmark's "dynamic length" rows (run.run_benchmark calls this): end to end on the real checkpoint,
    static-64 vs length-aware on the same backend, with the same accuracy check through postprocessing."""
    if not (Path(model_dir) / "config.json").is_file() or not Path(tsv).is_file():
        return {"skipped": f"{model_dir} or {tsv} not found"}
    backends = [RUNTIME_OF_VARIANT[n] for n in variant_names if n in RUNTIME_OF_VARIANT] or ["onnxruntime"]
    rows = run_dynamic_bench(model_dir=Path(model_dir), tsv=Path(tsv), work=Path(work), batch_sizes=batch_sizes,
                             backend_names=backends, threads=threads, repeats=repeats, log=log)
    return {"rows": rows, "repeats": repeats, "tsv": str(tsv), "target": dynamic_target(rows)}
