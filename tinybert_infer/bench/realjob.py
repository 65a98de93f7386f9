"""The benchmark's "real job" section: each precision's static-64 plan and its recommended (planned) plan, end to
end (bert_bin in, result folder out) on SST-2 dev, against the limit of the real job.

    python -m tinybert_infer real-job --model_dir ../shared/SST-2_model --data_dir ../shared/glue_dir/SST-2

The real job's FLOPs count the tokens that exist (no padding) and, as exported, the last layer for the [CLS] row
only: per sentence TinyBertConfig.executed_flops_per_sample(its length), averaged over the data. Its limit at a
precision = that precision's GEMM rate (limits.gemm_rates, measured in the same run) / those FLOPs. Rows run
interleaved (static, planned, static, planned, ...): one cold run (compiles included, reported as the first run), then
the best wall time of `repeats` warm ones; labels are compared with PyTorch eager's.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from tinybert_infer.layout import INPUT_NAMES
from tinybert_infer.plan.planner import PRECISIONS
from tinybert_infer.machine import peak_rss_mb
from tinybert_infer.isolate import call_in_child
from tinybert_infer.progress import log_stderr
from tinybert_infer.bench.prepare import RANDOM_WEIGHTS_TOLERANCE, inputs_and_exports
from tinybert_infer.bench.verdicts import real_job_targets

BATCH_SIZE = 32


def real_job_flops(config, lengths: Sequence[int], cls_only_last_layer: bool = True) -> float:
    """Mean FLOPs per sentence of the work that exists: each sentence at its own length."""
    lengths = np.asarray(lengths)
    values, counts = np.unique(lengths, return_counts=True)
    total = sum(c * config.executed_flops_per_sample(int(n), cls_only_last_layer) for n, c in zip(values, counts))
    return float(total / len(lengths))


def _static_plan(precision: str, recommended, static_model: Path, batch: int, threads: int, **build):
    """The static-64 yardstick: the recommended plan's OpenVINO variant (the same arithmetic), else the
    precision's plain OpenVINO one."""
    from tinybert_infer.export.optimize import artefact_path, variant
    from tinybert_infer.plan.planner import Plan, build_artefacts_in_child

    name = recommended.variant if recommended.runtime == "openvino" else f"openvino-{precision}"
    if variant(name).precision == "int8":
        build_artefacts_in_child([(static_model, [name])], batch_size=batch, threads=threads, **build)
    return Plan(name, str(artefact_path(static_model, name)), "static", batch, "fixed", threads=threads)


def _exports_and_torch_labels(checkpoint: Path, work: Path, feats: dict, batch: int, threads: int,
                              tolerance: Optional[float]):
    """The checkpoint's config, the static-BS and dynamic ONNX, and PyTorch eager's labels: run in a spawned child,
    so torch (the weights, the export, the eager model) stays out of the memory of the rows that follow."""
    from tinybert_infer.export.onnx import export_checkpoint, export_dynamic_checkpoint
    from tinybert_infer.models.checkpoint import read_checkpoint
    from tinybert_infer.plan.planner import Plan, open_plan

    static_model = export_checkpoint(checkpoint, batch, work, validate_count=8, tolerance=tolerance).sim_path
    dynamic_model = export_dynamic_checkpoint(checkpoint, work, tolerance=tolerance).sim_path
    with open_plan(Plan("torch", str(checkpoint), "length", batch, "dynamic", threads=threads,
                        checkpoint_dir=str(checkpoint))) as executor:
        labels = executor.score(feats).argmax(1)
    return read_checkpoint(checkpoint).config, static_model, dynamic_model, labels


def model_rows(checkpoint: Path, label: str, *, bin_dir: Path, work: Path, rates: dict, threads: int,
               batch: int = BATCH_SIZE, precisions: Sequence[str] = PRECISIONS, repeats: int = 2,
               calibration_tsv: Optional[Path] = None, gate=None, tolerance: Optional[float] = None,
               log: Callable[[str], None] = lambda s: None) -> list:
    """tolerance: export parity slack (None: the checkpoint specification's)."""
    from tinybert_infer.run.length import read_sample_files
    from tinybert_infer.eval.metrics import evaluate
    from tinybert_infer.export.optimize import nncf_available
    from tinybert_infer.plan.planner import make_plan, open_plan

    work.mkdir(parents=True, exist_ok=True)
    dirs = [bin_dir / n for n in INPUT_NAMES]
    samples = read_sample_files(dirs)
    config, static_model, dynamic_model, reference = call_in_child(
        _exports_and_torch_labels, checkpoint, work, samples.feats, batch, threads, tolerance)
    flops = real_job_flops(config, samples.lengths)
    out_root = Path(tempfile.mkdtemp(prefix="realjob_", dir=work))
    build = {"checkpoint_dir": checkpoint, "calibration_tsv": calibration_tsv}
    rows = []
    for precision in precisions:
        if precision == "int8" and not nncf_available():
            continue
        log(f"[real job] {label} {precision}: planning")
        choice = make_plan(dynamic_model=dynamic_model, precision=precision, batch_size=batch, threads=threads,
                           data=samples.feats, checkpoint_dir=checkpoint, calibration_tsv=calibration_tsv,
                           gate=gate, log=log)
        plans = {"static-64": _static_plan(precision, choice.plan, static_model, batch, threads, **build),
                 "recommended": choice.plan}
        executors = {k: open_plan(p) for k, p in plans.items()}
        best: Dict[str, float] = {}
        first: Dict[str, float] = {}
        reports = {}
        try:
            for rep in range(repeats + 1):  # run 0 is cold (the plan's compiles): reported apart, not in the best
                for kind, executor in executors.items():
                    start = time.perf_counter()
                    reports[kind] = executor.run_files(dirs, out_root, output_dirname=f"{label}_{precision}_{kind}_{rep}",
                                                       outfmt="TXT", show_progress=False)
                    took = time.perf_counter() - start
                    if rep == 0:
                        first[kind] = took
                    else:
                        best[kind] = min(best.get(kind, float("inf")), took)
        finally:
            compile_s = {k: e.backend.describe().get("compile_seconds") for k, e in executors.items()}
            for executor in executors.values():
                executor.close()
        limit = rates["gflops"].get(precision)
        limit_sps = limit * 1e9 / flops if limit else None
        for kind, plan in plans.items():
            scored = evaluate(reports[kind].result_dir, bin_dir, write=False)
            sps = samples.count / best[kind]
            rows.append({
                "model": label, "precision": precision, "kind": kind, "plan": plan.label(),
                "samples_per_s": sps, "samples_per_s_first_run": samples.count / first[kind],
                "real_job_limit": limit_sps,
                "fraction_of_real_job_limit": sps / limit_sps if limit_sps else None,
                "accuracy": (scored.metrics or {}).get("accuracy"),
                "labels_differ_from_pytorch": int(np.sum(scored.predictions != reference)),
                "compile_s": compile_s.get(kind), "padded_tokens": reports[kind].summary.get("padded_tokens"),
                "selection": choice.selection.get("samples_per_s") if kind == "recommended" else None,
            })
            log(f"  {kind}: {plan.label()}: {sps:.1f} samples/s")
    return rows


def real_job_section(*, model_dir: Path, data_dir: Path, work: Path, threads: int, rates: dict,
                     throughput_checkpoint: Optional[Path] = None, batch: int = BATCH_SIZE,
                     precisions: Sequence[str] = PRECISIONS, repeats: int = 2,
                     log: Callable[[str], None] = lambda s: None) -> dict:
    """Rows for the real checkpoint and the TinyBERT-4L-312D shape (random weights, the same dev token ids)."""
    from tinybert_infer.models.checkpoint import VOCAB_FILE
    from tinybert_infer.data.features import preprocess

    dev = Path(data_dir) / "dev.tsv"
    if not (Path(model_dir) / "config.json").is_file() or not dev.is_file():
        return {"skipped": f"{model_dir} or {dev} not found"}
    bin_dir = work / "bert_bin"
    preprocess(dev, Path(model_dir) / VOCAB_FILE, bin_dir, show_progress=False)
    test_tsv = Path(data_dir) / "test.tsv"
    common = dict(bin_dir=bin_dir, rates=rates, threads=threads, batch=batch, repeats=repeats,
                  calibration_tsv=test_tsv if test_tsv.is_file() else None)
    from tinybert_infer.plan.planner import dev_gate

    # Low precision on the trained checkpoint must stay within 0.5 points of fp32 on dev; random weights have no
    # accuracy to keep, so the 4L-312D shape is planned on speed alone.
    jobs = [(Path(model_dir), "checkpoint", dict(gate=dev_gate(dev, Path(model_dir) / VOCAB_FILE)))]
    if throughput_checkpoint is not None:
        jobs.append((Path(throughput_checkpoint), "4L-312D", dict(tolerance=RANDOM_WEIGHTS_TOLERANCE)))
    rows, rss = [], {}
    for checkpoint, label, extra in jobs:
        for precision in precisions:
            done = call_in_child(_rows_of_one_precision, checkpoint, label, work=work / label,
                                 **dict(common, precisions=[precision], **extra))
            rows += done["rows"]
            rss[f"{label} {precision}"] = done["peak_rss_mb"]
            log(f"[real job] {label} {precision}: peak RSS {done['peak_rss_mb']:.0f} MB")
    return {"rows": rows, "batch": batch, "repeats": repeats, "tsv": str(dev), "gemm_gflops": rates["gflops"],
            "targets": real_job_targets(rows), "peak_rss_mb": max(rss.values(), default=None),
            "peak_rss_mb_per_job": rss, "peak_rss_mb_driver": peak_rss_mb()}


def _rows_of_one_precision(checkpoint: Path, label: str, **kwargs) -> dict:
    """model_rows in a spawned child (see the module's docstring); its log goes to stderr."""
    rows = model_rows(checkpoint, label, log=log_stderr, **kwargs)
    return {"rows": rows, "peak_rss_mb": peak_rss_mb()}


def plan_stability(dynamic_model: Path, feats: dict, *, precision: str, batch: int, threads: int, runs: int = 10,
                   static_model=None, checkpoint_dir=None, calibration_tsv=None,
                   log: Callable[[str], None] = lambda s: None) -> dict:
    """How often the planner, measuring afresh each time (no cache), picks each plan: issue 10 asks for the same
    plan in >= 9 of 10 runs where candidates differ by more than 20 %."""
    from collections import Counter

    from tinybert_infer.plan.planner import make_plan

    picks, job_picks, rates, setups = Counter(), Counter(), [], []
    count = len(next(iter(feats.values())))
    for run in range(runs):
        choice = make_plan(dynamic_model=dynamic_model, precision=precision, batch_size=batch, threads=threads,
                           data=feats, static_model=static_model, checkpoint_dir=checkpoint_dir,
                           calibration_tsv=calibration_tsv, use_cache=False, job_size=count, log=lambda s: None)
        picks[choice.selection["plan_for_long_runs"]] += 1  # on samples/s alone
        job_picks[choice.plan.label()] += 1                 # for this job of `count` sentences, setup counted
        rates.append(choice.selection["samples_per_s"])
        setups.append(choice.selection["setup_s"])
        log(f"[stability] run {run + 1}/{runs}: {choice.selection['plan_for_long_runs']}; for {count} sentences "
            f"{choice.plan.label()}")
    return {"precision": precision, "runs": runs, "picks": dict(picks), "job_size": count,
            "picks_for_the_job": dict(job_picks), "samples_per_s_per_run": rates, "setup_s_per_run": setups}


def stability_runs(model_dir: Path, dev: Path, work: Path, *, precisions: Sequence[str], batch: int, threads: int,
                   runs: int, log: Callable[[str], None] = lambda s: None) -> list:
    """plan_stability per precision on the checkpoint, over the dev sentences."""
    from tinybert_infer.run.length import read_sample_files

    bin_dir, static, dynamic = inputs_and_exports(work, model_dir, dev, [batch])
    feats = read_sample_files([bin_dir / n for n in INPUT_NAMES]).feats
    test_tsv = Path(dev).parent / "test.tsv"  # int8 calibrates on test.tsv, as the real-job rows do
    return [plan_stability(dynamic, feats, precision=p, batch=batch, threads=threads, runs=runs,
                           static_model=static[batch], checkpoint_dir=model_dir,
                           calibration_tsv=test_tsv if test_tsv.is_file() else None, log=log) for p in precisions]
