"""`score --engine local`: output layout and order, labels equal PyTorch's, bad input, interrupted runs,
and the Ray engine's errors that need no cluster (no ray package, unreachable RAY_ADDRESS)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SENTENCES, write_tsv
from error_helpers import assert_error, run_main
from score_helpers import read_predictions, reference_logits, tiny_dyn_onnx, write_shards  # noqa: F401
from tinybert_infer.errors import ResultError
from tinybert_infer.run.results import INCOMPLETE_MARKER, summary_path
from tinybert_infer.score.corpus import Shard
from tinybert_infer.score.output import OrderedWriter


def score(tmp_path, tiny_checkpoint, onnx, *args):
    return run_main("score", "--model_dir", tiny_checkpoint, "--model", onnx, "--output", tmp_path / "result", *args)


def folder_of(stdout: str) -> str:
    return re.search(r"^result folder: (\S+)$", stdout, re.M).group(1)


def test_single_tsv_layout_and_pytorch_labels(tmp_path, tiny_checkpoint, tiny_dyn_onnx):
    tsv = write_tsv(tmp_path / "dev.tsv")
    code, out, err = score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, "--tsv", tsv, "--chunk_rows", "5",
                           "--batch_size", "3")
    assert code == 0, err
    name = folder_of(out)
    folder = tmp_path / "result" / name
    header, rows = read_predictions(folder / "predictions.tsv")
    assert header == ["index", "label", "prediction", "logit_0", "logit_1"]  # one file: no shard column
    assert [int(r[0]) for r in rows] == list(range(len(SENTENCES)))
    assert [r[1] for r in rows] == [label for _, label in SENTENCES]
    expected = reference_logits(tiny_checkpoint, [s for s, _ in SENTENCES])
    logits = np.array([[float(v) for v in r[3:]] for r in rows])
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert [int(r[2]) for r in rows] == expected.argmax(1).tolist()
    acc = float(np.mean(expected.argmax(1) == np.array([int(label) for _, label in SENTENCES])))
    assert f"acc:{acc:.4f}" in out
    summary = json.loads(summary_path(folder).read_text())
    assert summary["sentences"] == len(SENTENCES) and summary["engine"] == "local"
    assert summary["plan"]["backend"] == "onnxruntime" and summary["plan"]["batching"] == "length-aware"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["rows"] == len(SENTENCES) and not (folder / INCOMPLETE_MARKER).exists()
    # postprocessing scores a complete score folder from its own labels
    code, out2, err = run_main("postprocess", "--result_dir", folder)
    assert code == 0, err
    assert f"acc:{acc:.4f}" in out2


def test_shards_in_name_order_tsv_and_parquet(tmp_path, tiny_checkpoint, tiny_dyn_onnx):
    import pyarrow.parquet as pq

    folder = tmp_path / "corpus"
    write_shards(folder, [7, 3, 12])
    (folder / "part-10.tsv").write_text((folder / "part-1.tsv").read_text())  # name order: 0, 1, 10, 2
    (folder / "notes.txt").write_text("not a shard")
    code, out, err = score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, "--tsv", folder, "--chunk_rows", "4")
    assert code == 0, err
    header, rows = read_predictions(tmp_path / "result" / folder_of(out) / "predictions.tsv")
    assert header[:4] == ["shard", "index", "label", "prediction"]
    expected_keys = [(s, i) for s, n in (("part-0.tsv", 7), ("part-1.tsv", 3), ("part-10.tsv", 3),
                                         ("part-2.tsv", 12)) for i in range(n)]
    assert [(r[0], int(r[1])) for r in rows] == expected_keys
    code, out, err = score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, "--tsv", str(folder / "part-*.tsv"),
                           "--format", "parquet", "--chunk_rows", "1000")
    assert code == 0, err
    table = pq.read_table(tmp_path / "result" / folder_of(out) / "predictions.parquet").to_pydict()
    assert list(zip(table["shard"], table["index"])) == expected_keys
    assert [str(p) for p in table["prediction"]] == [r[3] for r in rows]
    np.testing.assert_allclose(table["logit_1"], [float(r[5]) for r in rows], atol=1e-6)


def test_unlabelled_corpus(tmp_path, tiny_checkpoint, tiny_dyn_onnx):
    tsv = write_tsv(tmp_path / "test.tsv", [(str(i), s) for i, (s, _) in enumerate(SENTENCES)],
                    header="index\tsentence")
    tsv.write_text("index\tsentence\n" + "".join(f"{i}\t{s}\n" for i, (s, _) in enumerate(SENTENCES)))
    code, out, err = score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, "--tsv", tsv)
    assert code == 0, err
    assert "acc:" not in out
    header, rows = read_predictions(tmp_path / "result" / folder_of(out) / "predictions.tsv")
    assert header == ["index", "prediction", "logit_0", "logit_1"] and len(rows) == len(SENTENCES)


@pytest.mark.parametrize("bad, fragment", [
    (b"a good film\t1\n\xff\xfe bad\t0\n", ":3: invalid UTF-8"),
    (b"a good film\t1\nnot\tfun\t0\n", ":3: expected 2 tab-separated columns, found 3"),
    (b"a good film\t1\nnot fun\t7\n", ":3: label '7' not in the label set"),
])
def test_bad_shard_one_line_and_nothing_left(tmp_path, tiny_checkpoint, tiny_dyn_onnx, bad, fragment):
    folder = tmp_path / "corpus"
    write_shards(folder, [30, 30])
    (folder / "part-2.tsv").write_bytes(b"sentence\tlabel\n" + bad)
    code, _, err = score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, "--tsv", folder, "--chunk_rows", "8")
    assert_error(code, err, 4, f"{folder.resolve() / 'part-2.tsv'}{fragment}")
    assert not any((tmp_path / "result").iterdir())


def test_mixed_labelled_and_unlabelled_shards_refused(tmp_path, tiny_checkpoint, tiny_dyn_onnx):
    folder = tmp_path / "corpus"
    write_shards(folder, [5])
    (folder / "part-1.tsv").write_text("index\tsentence\n0\tfine\n")
    code, _, err = score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, "--tsv", folder)
    assert_error(code, err, 4, "part-1.tsv:1: header lacks a label column")


def test_missing_inputs(tmp_path, tiny_checkpoint, tiny_dyn_onnx):
    code, _, err = score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, "--tsv", tmp_path / "nope.tsv")
    assert_error(code, err, 4, "nope.tsv: TSV file not found")
    code, _, err = score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, "--tsv", str(tmp_path / "x*.tsv"))
    assert_error(code, err, 4, "no file matches")
    code, _, err = run_main("score", "--model_dir", tiny_checkpoint, "--model", tmp_path / "none.onnx",
                            "--tsv", write_tsv(tmp_path / "d.tsv"))
    assert_error(code, err, 6, "none.onnx: ONNX model not found", "export --dynamic")


# ---------------------------------------------------------------- the ordered writer (what Ray relies on)
class ListSink:
    def __init__(self):
        self.rows = []

    def write(self, run):
        self.rows += list(zip(run["shard"].tolist(), run["index"].tolist()))


def block(shard, start, stop, total):
    index = np.arange(start, stop)
    logits = np.stack([index * 0.0, index * 1.0], axis=1).astype(np.float32)
    return {"shard": np.full(len(index), shard), "index": index, "label": index % 2, "last": index == total - 1,
            "prediction": logits.argmax(1), "logits": logits}


def test_writer_orders_runs_drops_repeats_and_refuses_gaps(tmp_path):
    shards = [Shard("a", "/a"), Shard("b", "/b")]
    sink = ListSink()
    writer = OrderedWriter(sink, tmp_path, shards, 2)
    merged = {k: np.concatenate([block(1, 4, 6, 6)[k], block(0, 0, 2, 5)[k]]) for k in block(0, 0, 1, 1)}
    for piece in (block(1, 0, 4, 6), merged, block(0, 2, 5, 5), block(0, 0, 2, 5), block(1, 2, 6, 6)):
        writer.add(piece)
    writer.check_complete()
    assert sink.rows == [(0, i) for i in range(5)] + [(1, i) for i in range(6)]
    assert writer.duplicates == 2 + 4 and writer.rows_written == 11
    assert not list(tmp_path.glob("run-*.npz"))  # spilled runs are consumed
    gap = OrderedWriter(ListSink(), tmp_path, shards, 2)
    gap.add(block(0, 0, 2, 5))
    gap.add(block(0, 3, 5, 5))
    gap.add(block(1, 0, 6, 6))
    with pytest.raises(ResultError, match=r"/a: rows 2\.\.4 never arrived"):
        gap.check_complete()


# ---------------------------------------------------------------- interrupted runs
def _start_score(tmp_path, tiny_checkpoint, onnx, tsv, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "tinybert_infer", "score", "--tsv", str(tsv), "--model_dir",
                             str(tiny_checkpoint), "--model", str(onnx), "--output", str(tmp_path / "result"),
                             "--chunk_rows", "64", "--threads", "1", *extra], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_rows(proc, result: Path, timeout=120):
    """Until some rows are in a staging table; returns the result folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for table in result.glob("*/.staging/predictions.tsv") if result.is_dir() else []:
            if table.stat().st_size > 2000:
                return table.parent.parent
        if proc.poll() is not None:
            pytest.fail(f"finished (exit {proc.returncode}) too early: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no rows written in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_leaves_nothing_postprocessing_accepts(tmp_path, tiny_checkpoint, tiny_dyn_onnx, sig):
    tsv = write_tsv(tmp_path / "big.tsv", SENTENCES * 3000)
    proc = _start_score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, tsv)
    folder = wait_for_rows(proc, tmp_path / "result")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "error: interrupted" in err
        assert not folder.exists() and not summary_path(folder).exists()
    else:
        assert proc.returncode == -signal.SIGKILL
        assert (folder / INCOMPLETE_MARKER).exists() and not summary_path(folder).exists()
        code, _, err = run_main("postprocess", "--result_dir", folder)
        assert_error(code, err, 5, "incomplete run")


# ---------------------------------------------------------------- --engine ray without a cluster
def test_missing_ray_names_the_package(tmp_path, tiny_checkpoint, tiny_dyn_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    code, _, err = score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, "--tsv", write_tsv(tmp_path / "d.tsv"),
                         "--engine", "ray")
    assert_error(code, err, 7, "--engine ray needs the package ray[data]")
    assert not (tmp_path / "result").exists()


def test_unreachable_cluster_names_the_address(tmp_path, tiny_checkpoint, tiny_dyn_onnx, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    code, _, err = score(tmp_path, tiny_checkpoint, tiny_dyn_onnx, "--tsv", write_tsv(tmp_path / "d.tsv"),
                         "--engine", "ray")
    assert_error(code, err, 7, f"RAY_ADDRESS=127.0.0.1:{port}: cannot reach a Ray cluster there")
    assert not (tmp_path / "result").exists()


def _copy_onnx(onnx: Path, folder: Path) -> Path:
    """The planner writes its artefacts and its cache beside the model: a private copy per test."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(onnx, folder / onnx.name))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8", "auto"])
def test_precision_runs_the_planned_plan_and_records_it(tmp_path, tiny_checkpoint, tiny_dyn_onnx, precision):
    """--precision hands the choice to the run planner: timed on the corpus, gated on the dev set for low
    precision. fp32 plans give PyTorch's labels; every plan's choice is in the summary, and it is what ran."""
    tsv = write_tsv(tmp_path / "glue" / "dev.tsv")
    write_tsv(tmp_path / "glue" / "test.tsv", header="index\tsentence",
              rows=[(str(i), s) for i, (s, _) in enumerate(SENTENCES)])  # index first: the GLUE test layout
    onnx = _copy_onnx(tiny_dyn_onnx, tmp_path / "model")
    # One thread: one stream per OpenVINO candidate (streams x plans compose in tests/plan/test_planner.py),
    # so auto gates and times about half as many compiled shapes.
    code, out, err = score(tmp_path, tiny_checkpoint, onnx, "--tsv", tsv, "--precision", precision,
                           "--data_dir", tmp_path / "glue", "--batch_size", "4", "--threads", "1")
    assert code == 0, err
    folder = tmp_path / "result" / folder_of(out)
    summary = json.loads(summary_path(folder).read_text())
    ran = summary["plan"]["run_plan"]
    assert summary["plan"]["plan_selection"]["plan"]["label"] == ran["label"]
    assert summary["plan"]["backend"] == "plan" and summary["plan"]["precision"] == ran["precision"]
    assert "[plan] chose" in err or summary["plan"]["plan_selection"].get("cached")
    expected = reference_logits(tiny_checkpoint, [s for s, _ in SENTENCES]).argmax(1)
    _, rows = read_predictions(folder / "predictions.tsv")
    got = np.array([int(r[2]) for r in rows])
    if precision == "fp32":
        assert ran["precision"] == "fp32" and got.tolist() == expected.tolist()
    else:
        assert precision == "auto" or ran["precision"] == precision
        gate = summary["plan"]["plan_selection"]["accuracy_gate"]
        assert gate["max_drop"] == (0.003 if precision == "auto" else 0.005)
        assert gate["fp32_accuracy"] - gate["accuracy"][ran["label"]] <= gate["max_drop"] + 1e-12


def test_precision_without_a_dev_set_is_refused_and_backend_with_precision_too(tmp_path, tiny_checkpoint,
                                                                              tiny_dyn_onnx):
    from tinybert_infer.errors import UsageError

    tsv = write_tsv(tmp_path / "dev.tsv")
    onnx = _copy_onnx(tiny_dyn_onnx, tmp_path / "model")
    code, _, err = score(tmp_path, tiny_checkpoint, onnx, "--tsv", tsv, "--precision", "bf16",
                         "--data_dir", tmp_path / "none")
    assert_error(code, err, UsageError.exit_code, tmp_path / "none" / "dev.tsv", "accuracy gate")
    code, _, err = score(tmp_path, tiny_checkpoint, onnx, "--tsv", tsv, "--precision", "fp32", "--backend", "torch")
    assert_error(code, err, UsageError.exit_code, "--backend", "--precision", "not both")
    assert not (tmp_path / "result").exists() or not any((tmp_path / "result").iterdir())
