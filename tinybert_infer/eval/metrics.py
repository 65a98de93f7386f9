"""Scoring a result folder: accuracy, confusion matrix, per-class precision/recall (scikit-learn)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tinybert_infer.data.features import check_inputs_tokenizer, read_manifest
from tinybert_infer.errors import DataError, ResultError
from tinybert_infer.fsutil import staged_file, write_json_atomic
from tinybert_infer.run.results import metrics_path, predictions_path, read_logits, read_summary_value, summary_path


_OUTPUT_NAME = re.compile(r"^.+_0\.(txt|bin|npy)$")


@dataclass
class Evaluation:
    result_dir: Path
    predictions: np.ndarray
    logits: np.ndarray
    metrics: Optional[dict]


def sample_stems(manifest: dict) -> list[str]:
    pattern = manifest["file_pattern"]
    return [pattern.format(index=i).split(".", 1)[0] for i in range(manifest["count"])]


def score(labels, predictions, num_labels: int) -> dict:
    # imported here: scikit-learn takes about a second to import, and a refused result folder never needs it
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = np.asarray(labels)
    classes = list(range(num_labels))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=0
    )
    correct = int((labels == predictions).sum())
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "samples": int(labels.size),
        "correct": correct,
        "confusion_matrix": confusion_matrix(labels, predictions, labels=classes).tolist(),
        "per_class": {
            str(c): {"precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
                     "support": int(support[c])}
            for c in classes
        },
    }


def _check_consistency(result_dir: Path, manifest: dict, bin_dir=None) -> None:
    """The run must have read the inputs this manifest describes (when its summary says what it read)."""
    outputs = sum(1 for p in result_dir.iterdir() if _OUTPUT_NAME.match(p.name))
    if outputs > manifest["count"]:
        raise ResultError(
            f"{result_dir}: {outputs} output files but the manifest describes {manifest['count']} samples "
            f"(results of another input set?)"
        )
    check_inputs_tokenizer(result_dir, manifest, read_summary_value(result_dir, "model_tokenizer"), ResultError,
                           model_vocab=read_summary_value(result_dir, "model_vocab"))
    recorded = read_summary_value(result_dir, "inputs_manifest_sha256")
    if recorded and manifest.get("_sha256") and recorded != manifest["_sha256"]:
        raise ResultError(
            f"{result_dir}: produced from different preprocessed inputs than the manifest given "
            f"(re-run inference or point --bin_dir at the inputs it used)"
        )
    if not recorded and bin_dir is not None:
        _check_filesinfo(result_dir, manifest, Path(bin_dir))


def _check_filesinfo(result_dir: Path, manifest: dict, bin_dir: Path) -> None:
    """ais_bench's summary records no inputs digest, but its filesinfo lists, sample by sample in order,
    the files each output was computed from: they must be this manifest's, one per input role, in order."""
    filesinfo = read_summary_value(result_dir, "filesinfo")
    if not isinstance(filesinfo, dict) or not filesinfo:
        return
    where = summary_path(result_dir)
    if len(filesinfo) != manifest["count"]:
        raise ResultError(f"{where}: {len(filesinfo)} samples in filesinfo, but the manifest describes "
                          f"{manifest['count']} (results of another input set?)")
    roles = manifest.get("inputs") or []
    for position, (key, entry) in enumerate(filesinfo.items()):
        name = manifest["file_pattern"].format(index=position)
        infiles = [Path(f) for f in entry.get("infiles", [])] if isinstance(entry, dict) else []
        fits = str(key) == str(position) and [(f.parent.name, f.name) for f in infiles] == [(r, name) for r in roles]
        other_dir = fits and bin_dir.is_dir() and any(
            f.parent.parent.is_dir() and not os.path.samefile(f.parent.parent, bin_dir) for f in infiles)
        if not fits or other_dir:
            raise ResultError(f"{where}: sample {key} was computed from {', '.join(map(str, infiles)) or 'no files'}, "
                              f"not {bin_dir}/{{{','.join(roles)}}}/{name} (other inputs, or folders in another "
                              f"order; re-run inference on these inputs or point --bin_dir at the ones it used)")


def evaluate(result_dir, bin_dir, *, num_labels: Optional[int] = None, write: bool = True) -> Evaluation:
    result_dir = Path(result_dir)
    manifest = read_manifest(bin_dir)
    stems = sample_stems(manifest)
    labels = manifest.get("labels")
    width = num_labels or (len(manifest["label_names"]) if manifest.get("label_names") else None)
    if width is None:
        width = _width_of_first_output(result_dir, stems)
    logits = read_logits(result_dir, stems, width)
    _check_consistency(result_dir, manifest, bin_dir)
    predictions = logits.argmax(axis=1)
    metrics = None
    if labels is not None:
        if len(labels) != len(stems):
            raise DataError(f"{Path(bin_dir)}: manifest has {len(labels)} labels for {len(stems)} samples")
        metrics = score(labels, predictions, width)
        metrics["result_dir"] = str(result_dir)
        metrics["tsv"] = manifest["tsv"]
        if write:
            write_json_atomic(metrics_path(result_dir), metrics)
    elif write:
        ids = manifest.get("guids") or [str(i) for i in range(len(stems))]
        with staged_file(predictions_path(result_dir)) as tmp:
            tmp.write_text("index\tprediction\n" + "".join(f"{g}\t{p}\n" for g, p in zip(ids, predictions)))
    return Evaluation(result_dir, predictions, logits, metrics)


def _width_of_first_output(result_dir: Path, stems) -> int:
    from tinybert_infer.run.results import check_complete, find_output_file, read_output

    check_complete(result_dir)
    first = find_output_file(result_dir, stems[0])
    if first is None:
        raise ResultError(f"{result_dir}: missing output file(s) {stems[0]}_0.txt; refusing to score a subset")
    return read_output(first).size


def format_report(metrics: dict) -> str:
    lines = [
        f"acc:{metrics['accuracy']:.4f}",
        f"samples: {metrics['samples']}  correct: {metrics['correct']}",
        "confusion matrix (rows = true label, columns = predicted):",
    ]
    for label, row in enumerate(metrics["confusion_matrix"]):
        lines.append(f"  {label}: " + " ".join(f"{v:6d}" for v in row))
    lines.append("class  precision  recall  f1      support")
    for label, stats in metrics["per_class"].items():
        lines.append(f"  {label:3s}  {stats['precision']:.4f}     {stats['recall']:.4f}  {stats['f1']:.4f}  {stats['support']}")
    return "\n".join(lines)
