"""The accuracy section: the real checkpoint through the real pipeline (preprocess -> run_files -> evaluate), once
per artefact at one batch size (accuracy does not depend on the batch), each run in its own process."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from tinybert_infer.layout import INPUT_NAMES, SEQ_LEN
from tinybert_infer.bench.cells import cell_error, in_child, variant_task
from tinybert_infer.bench.prepare import export_for, prepare_artefacts, read_config, subset_tsv


def accuracy_run(backend, task: dict) -> dict:
    """In the cell's process (cells.run_cell): one artefact over bert_bin/ into a result folder. The parent
    scores it (score_run), so the cell's peak RSS is the runtime's and its start does not import scikit-learn."""
    from tinybert_infer.run.inference import run_files

    bin_dir = Path(task["bin_dir"])
    result_root = Path(task["result_root"])
    shutil.rmtree(result_root / task["variant"], ignore_errors=True)  # our own scratch folder, re-run each time
    report = run_files(backend, [bin_dir / n for n in INPUT_NAMES], result_root, batch_size=task["batch"],
                       outfmt="BIN", output_dirname=task["variant"], show_progress=False)
    return {"result_dir": str(report.result_dir)}


def score_run(run: dict, bin_dir: Path) -> dict:
    """A finished accuracy cell's folder through postprocessing: accuracy, sample count, predictions."""
    from tinybert_infer.eval.metrics import evaluate

    if "result_dir" not in run:
        return run  # the cell's error, as it reported it
    try:
        evaluation = evaluate(Path(run["result_dir"]), bin_dir)
    except Exception as exc:  # as in a cell: one failing backend must not sink the whole table
        return dict(run, error=cell_error(exc))
    return dict(run, accuracy=100.0 * evaluation.metrics["accuracy"], samples=evaluation.metrics["samples"],
                predictions=evaluation.predictions.tolist())


def accuracy_section(names, *, model_dir: Path, data_dir: Path, work: Path, bs: int, threads: int,
                     samples: Optional[int], log) -> dict:
    import numpy as np

    from tinybert_infer.models.checkpoint import VOCAB_FILE
    from tinybert_infer.data.features import preprocess

    dev = data_dir / "dev.tsv"
    if not (model_dir / "config.json").is_file() or not dev.is_file():
        log(f"accuracy skipped: {model_dir} or {dev} not found")
        return {"skipped": f"{model_dir} or {dev} not found"}
    acc_dir = work / "accuracy"
    acc_dir.mkdir(parents=True, exist_ok=True)
    tsv = subset_tsv(dev, samples, acc_dir)
    bin_dir = acc_dir / "bert_bin"
    preprocess(tsv, model_dir / VOCAB_FILE, bin_dir, show_progress=False)
    config = read_config(model_dir)
    sim = export_for(model_dir, bs, acc_dir, tsv=tsv)
    calib_tsv = data_dir / "test.tsv"  # unlabelled: calibration never sees the sentences that are scored

    def calibration():
        from tinybert_infer.export.optimize import calibration_batches, calibration_features

        feats, _ = calibration_features(model_dir, calib_tsv if calib_tsv.is_file() else None, 256, SEQ_LEN)
        return calibration_batches(feats, bs)

    artefacts = prepare_artefacts(sim, names, batch=bs, threads=threads, config=config, calibration=calibration,
                                  log=log)
    runs = {}
    for name in names:
        art = artefacts.get(name)
        if art is None:
            continue
        runs[name] = score_run(in_child(variant_task("accuracy", name, art, threads=threads, checkpoint_dir=model_dir,
                                                     batch=bs, bin_dir=str(bin_dir),
                                                     result_root=str(acc_dir / "result"))), bin_dir)
        shown = f"{runs[name]['accuracy']:.2f}" if "accuracy" in runs[name] else runs[name].get("error")
        log(f"  {name:18s} accuracy {shown}")
    reference = runs.get("torch", {}).get("predictions")
    per_backend = {}
    for name, run in runs.items():
        entry = {k: run[k] for k in ("accuracy", "samples", "error", "rss_mb") if k in run}
        if reference is not None and "predictions" in run:
            entry["labels_differing_from_torch"] = int(np.sum(np.asarray(run["predictions"]) != np.asarray(reference)))
        per_backend[name] = entry
    return {"checkpoint": str(model_dir), "tsv": str(tsv), "batch_size": bs, "samples": samples or "all",
            "calibration_tsv": str(calib_tsv), "shape": {"layers": config.num_hidden_layers,
                                                         "hidden": config.hidden_size},
            "artefact_notes": {n: a.notes for n, a in artefacts.items() if a.notes}, "per_backend": per_backend}
