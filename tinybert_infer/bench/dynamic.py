"""Static-64 vs length-aware batching, side by side: end-to-end (files in, result folder out) on SST-2 dev.

    python -m tinybert_infer.dynamic_bench [--backend onnxruntime|openvino|torch] [--batch_sizes 1,8,32,64]

For each batch size the same backend runs the static ModelZoo path (inference.run_files on
TinyBERT_sim_bsBS.onnx) and the length-aware path (dynamic.run_files_by_length on TinyBERT_sim_dyn.onnx)
over the same preprocessed files, alternately, `repeats` times; the best wall time of each is kept (other
processes on the machine only ever slow a run down). Both result folders are scored through postprocessing
and must give the same labels with logits within 1e-4, else the row fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from tinybert_infer.errors import PipelineError, UsageError
from tinybert_infer.layout import INPUT_NAMES, default_data_dir, default_model_dir

BATCH_SIZES = (1, 8, 32, 64)
LOGIT_TOLERANCE = 1e-4
TARGET_RATIO = 2.0  # issue 6: >= 2x the static-64 path at BS >= 8


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
    row["parity"] = row["labels_equal"] and row["max_logit_diff"] <= LOGIT_TOLERANCE
    for backend in (*statics.values(), dynamic):
        backend.close()
    return row


def prepare(work: Path, model_dir: Path, tsv: Path, batch_sizes: Sequence[int], needs_onnx: bool,
            log: Callable[[str], None]) -> tuple:
    """bert_bin/ from the TSV, the static ONNX per batch size and the dynamic ONNX, all under work/."""
    from tinybert_infer.models.checkpoint import VOCAB_FILE
    from tinybert_infer.data.features import preprocess
    from tinybert_infer.export.onnx import export_checkpoint, export_dynamic_checkpoint

    bin_dir = work / "bert_bin"
    log(f"preprocess {tsv} -> {bin_dir}")
    preprocess(tsv, model_dir / VOCAB_FILE, bin_dir, show_progress=False)
    static_models, dynamic_model = {}, None
    if needs_onnx:  # PyTorch eager alone runs the checkpoint itself for both paths
        for batch in batch_sizes:
            log(f"export static TinyBERT_sim_bs{batch}.onnx")
            static_models[batch] = export_checkpoint(model_dir, batch, work, tsv_path=tsv, validate_count=8).sim_path
        log("export dynamic TinyBERT_sim_dyn.onnx")
        dynamic_model = export_dynamic_checkpoint(model_dir, work, tsv_path=tsv).sim_path
    return bin_dir, static_models, dynamic_model


def run_dynamic_bench(*, model_dir: Path, tsv: Path, work: Path, batch_sizes: Sequence[int] = BATCH_SIZES,
                      backend_names: Sequence[str] = ("onnxruntime",), threads: Optional[int] = None,
                      repeats: int = 2, pad_multiple: Optional[int] = None, buckets: Optional[Sequence[int]] = None,
                      log: Callable[[str], None] = lambda s: None) -> list:
    """Rows for every backend x batch size; the exports are made once and shared by the backends."""
    if "auto" in backend_names:
        raise UsageError("name the backends (onnxruntime, openvino, torch): both paths must run on the same one")
    needs_onnx = any(b != "torch" for b in backend_names)
    bin_dir, static_models, dynamic_model = prepare(work, model_dir, tsv, batch_sizes, needs_onnx, log)
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
# `python -m tinybert_infer.dynamic_bench --backend torch`: it would double the benchmark's run time).
RUNTIME_OF_VARIANT = {"onnxruntime": "onnxruntime", "openvino-fp32": "openvino"}


def dynamic_length_section(variant_names: Sequence[str], *, model_dir: Path, tsv: Path, work: Path,
                           batch_sizes: Sequence[int], threads: Optional[int] = None, repeats: int = 1,
                           log: Callable[[str], None] = lambda s: None) -> dict:
    """The benchmark's "dynamic length" rows (tinybert_infer.bench calls this): end to end on the real checkpoint,
    static-64 vs length-aware on the same backend, with the same accuracy check through postprocessing."""
    if not (Path(model_dir) / "config.json").is_file() or not Path(tsv).is_file():
        return {"skipped": f"{model_dir} or {tsv} not found"}
    backends = [RUNTIME_OF_VARIANT[n] for n in variant_names if n in RUNTIME_OF_VARIANT] or ["onnxruntime"]
    rows = run_dynamic_bench(model_dir=Path(model_dir), tsv=Path(tsv), work=Path(work), batch_sizes=batch_sizes,
                             backend_names=backends, threads=threads, repeats=repeats, log=log)
    gated = [r for r in rows if r["batch"] >= 8]
    worst = min((r["ratio"] for r in gated), default=None)
    target = {"target": f"dynamic length >= {TARGET_RATIO:g}x static-64 end to end (same backend) at BS >= 8, "
                        f"same labels, logits within {LOGIT_TOLERANCE:g}",
              "ratio": worst, "per_bs": {f"{r['backend']} bs{r['batch']}": round(r["ratio"], 2) for r in gated},
              "met": bool(gated) and worst >= TARGET_RATIO and all(r["parity"] for r in rows)}
    return {"rows": rows, "repeats": repeats, "tsv": str(tsv), "target": target}


def markdown_section(section: Optional[dict]) -> list:
    """Lines for the benchmark's report."""
    if not section:
        return []
    lines = ["", "## Dynamic length (length-aware batching) vs static-64, end to end", ""]
    if "skipped" in section:
        return lines + [f"Skipped: {section['skipped']}."]
    return lines + [
        f"Files in, result folder out, on the real checkpoint over {section['tsv']}; best of {section['repeats']} "
        "alternating run(s) per path; both result folders scored by postprocessing (docs/dynamic.md).", "",
        format_rows(section["rows"]), "",
        _target_line(section["target"])]


def _target_line(target: dict) -> str:
    if target["ratio"] is None:
        return f"Target: {target['target']}: no batch size >= 8 in this run."
    return (f"Target: {target['target']}: worst ratio {target['ratio']:.2f}x; "
            f"{'met' if target['met'] else 'NOT met'} in this run.")


def format_rows(rows: Sequence[dict]) -> str:
    lines = [
        "| backend | BS | static-64 samples/s | dynamic samples/s | ratio | tokens static / computed / real "
        "| token reduction | streams static / dynamic | labels equal | max logit diff | acc static / dynamic |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = (f"{r['accuracy_static']:.4f} / {r['accuracy_dynamic']:.4f}"
               if r["accuracy_static"] is not None else "n/a")
        lines.append(
            f"| {r['backend']} | {r['batch']} | {r['static_sps']:.1f} | {r['dynamic_sps']:.1f} | {r['ratio']:.2f}x "
            f"| {r['static_tokens']} / {r['padded_tokens']} / {r['real_tokens']} | {r['token_reduction']:.2f}x "
            f"| {_streams_cell(r)} | {'yes' if r['labels_equal'] else 'NO'} | {r['max_logit_diff']:.2e} | {acc} |")
    return "\n".join(lines)


def _streams_cell(row: dict) -> str:
    streams = row.get("streams") or {}
    return f"{streams.get('static_best', 1)} / {streams.get('dynamic', 1)}"


def verdict(rows: Sequence[dict]) -> list:
    """Lines naming any row that misses the parity requirement or the >= 2x target at BS >= 8."""
    problems = [f"bs {r['batch']}: predictions differ from the static path (labels equal: {r['labels_equal']}, "
                f"max logit diff {r['max_logit_diff']:.2e})" for r in rows if not r["parity"]]
    problems += [f"bs {r['batch']}: {r['ratio']:.2f}x, below the {TARGET_RATIO:g}x target" for r in rows
                 if r["batch"] >= 8 and r["ratio"] < TARGET_RATIO]
    return problems


def main(argv=None) -> int:
    from tinybert_infer.cli.args import positive_int
    from tinybert_infer.run.length import parse_buckets

    parser = argparse.ArgumentParser(prog="python -m tinybert_infer.bench.dynamic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", type=Path, default=None)
    parser.add_argument("--data_dir", type=Path, default=None)
    parser.add_argument("--tsv", type=Path, default=None, help="default: <data_dir>/dev.tsv")
    parser.add_argument("--backend", default="onnxruntime",
                        help="onnxruntime (default), openvino or torch; comma-separated for several")
    parser.add_argument("--batch_sizes", default=",".join(map(str, BATCH_SIZES)))
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("--repeats", type=positive_int, default=2, help="alternating runs per path; best kept")
    pad = parser.add_mutually_exclusive_group()
    pad.add_argument("--pad_multiple", type=positive_int, default=None)
    pad.add_argument("--buckets", default=None)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new one under /tmp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    try:
        batch_sizes = [positive_int(b) for b in args.batch_sizes.split(",") if b]
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--batch_sizes: {exc}")
    model_dir = args.model_dir or default_model_dir()
    tsv = args.tsv or (args.data_dir or default_data_dir()) / "dev.tsv"
    work = args.work or Path(tempfile.mkdtemp(prefix="tinybert_dynamic_bench-"))
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    try:
        rows = run_dynamic_bench(model_dir=model_dir, tsv=tsv, work=work, batch_sizes=batch_sizes,
                                 backend_names=[b for b in args.backend.split(",") if b], threads=args.threads,
                                 repeats=args.repeats,
                                 pad_multiple=args.pad_multiple,
                                 buckets=parse_buckets(args.buckets) if args.buckets else None, log=log)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(format_rows(rows))
    print(f"(end-to-end wall time, files in -> result folder out; best of {args.repeats} alternating runs; "
          f"scratch: {work})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    problems = verdict(rows)
    for line in problems:
        print(f"note: {line}")
    return 1 if any(not r["parity"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
