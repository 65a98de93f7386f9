"""Stage 5: scoring by file name, the ModelZoo accuracy line, metrics JSON and GLUE predictions."""

import json
import os

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from conftest import SENTENCES, run_script, write_tsv
from error_helpers import assert_error
from tinybert_infer.data.features import preprocess
from tinybert_infer.errors import ResultError
from tinybert_infer.eval.metrics import evaluate, format_report
from tinybert_infer.run.results import create_result_dir, mark_complete, write_output

N = len(SENTENCES)
LABELS = [int(label) for _, label in SENTENCES]


def fake_run(result_root, logits, fmt="TXT", order=None):
    """A result folder in ais_bench's layout with the given logits (files written in `order`)."""
    folder = create_result_dir(result_root)
    for i in order or range(len(logits)):
        write_output(folder / f"input{i}_0.{fmt.lower()}", logits[i:i + 1].astype(np.float32), fmt)
    mark_complete(folder, {"throughput": 1.0})
    return folder


@pytest.fixture()
def bin_dir(tmp_path, tiny_checkpoint, tiny_tsv):
    preprocess(tiny_tsv, tiny_checkpoint / "vocab.txt", tmp_path / "bert_bin", show_progress=False)
    return tmp_path / "bert_bin"


def test_accuracy_and_report(tmp_path, bin_dir):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(N, 2))
    folder = fake_run(tmp_path / "result", logits, order=list(reversed(range(N))))
    evaluation = evaluate(folder, bin_dir)
    preds = logits.argmax(1)
    assert evaluation.predictions.tolist() == preds.tolist()  # by name, not by listing order
    m = evaluation.metrics
    assert m["accuracy"] == pytest.approx(accuracy_score(LABELS, preds))
    assert m["samples"] == N and m["correct"] == int((preds == LABELS).sum())
    assert np.array(m["confusion_matrix"]).sum() == N
    assert format_report(m).splitlines()[0] == f"acc:{m['accuracy']:.4f}"
    saved = json.loads((tmp_path / "result" / f"{folder.name}_metrics.json").read_text())
    assert saved["accuracy"] == m["accuracy"]


@pytest.mark.parametrize("fmt", ["BIN", "NPY"])
def test_bin_and_npy_results_score_the_same(tmp_path, bin_dir, fmt):
    logits = np.random.default_rng(1).normal(size=(N, 2))
    # two result roots: a second timestamped folder in one root would wait for the next second
    a = evaluate(fake_run(tmp_path / "result_txt", logits, "TXT"), bin_dir).predictions
    b = evaluate(fake_run(tmp_path / f"result_{fmt.lower()}", logits, fmt), bin_dir).predictions
    assert a.tolist() == b.tolist()


def test_missing_samples_are_refused_naming_the_first(tmp_path, bin_dir):
    folder = fake_run(tmp_path / "result", np.zeros((N, 2)))
    os.unlink(folder / "input4_0.txt")
    os.unlink(folder / "input9_0.txt")
    proc = run_script("postprocess_data.sh", folder.name, cwd=tmp_path)
    assert_error(proc.returncode, proc.stderr, ResultError.exit_code, f"result/{folder.name}: ", "input4_0.txt",
                 "input9_0.txt", "refusing to score a subset")
    assert "acc:" not in proc.stdout
    assert not (tmp_path / "result" / f"{folder.name}_metrics.json").exists()


def test_unlabelled_set_writes_glue_predictions(tmp_path, tiny_checkpoint):
    tsv = write_tsv(tmp_path / "test.tsv", [("0", "a great film"), ("1", "bad"), ("2", "good")],
                    header="index\tsentence")
    preprocess(tsv, tiny_checkpoint / "vocab.txt", tmp_path / "bert_bin", show_progress=False)
    folder = fake_run(tmp_path / "result", np.array([[0.0, 1.0], [2.0, 1.0], [0.5, 0.7]]))
    proc = run_script("postprocess_data.sh", folder.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "result" / f"{folder.name}_predictions.tsv").read_text()
    assert text == "index\tprediction\n0\t1\n1\t0\n2\t1\n"


def test_postprocess_script_prints_modelzoo_line(tmp_path, bin_dir):
    logits = np.tile([[0.0, 1.0]], (N, 1))
    folder = fake_run(tmp_path / "result", logits)
    proc = run_script("postprocess_data.sh", folder.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = sum(LABELS) / N
    assert proc.stdout.splitlines()[0] == f"acc:{expected:.4f}"
    assert f"samples: {N}  correct: {sum(LABELS)}" in proc.stdout


@pytest.mark.parametrize("fmt", ["TXT", "BIN", "NPY"])
def test_an_output_file_is_never_overwritten(tmp_path, fmt):
    path = tmp_path / f"input0_0.{fmt.lower()}"
    write_output(path, np.array([[1.0, -1.0]], np.float32), fmt)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_output(path, np.array([[2.0, -2.0]], np.float32), fmt)
    assert path.read_bytes() == before
