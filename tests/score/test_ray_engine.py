"""`score --engine ray` on a Ray started inside this process (slow: Ray and its actors take seconds to start).

Same rows as the local engine, row for row; an actor that dies mid-run is restarted by Ray and every row is
still written exactly once; a bad shard stops the run with one line; an interrupted driver leaves nothing
that postprocessing accepts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SENTENCES, write_tsv
from error_helpers import assert_error, run_main
from score_helpers import read_predictions, tiny_dyn_onnx, write_shards  # noqa: F401
from tinybert_infer.errors import DataError, UsageError
from tinybert_infer.run.results import INCOMPLETE_MARKER, summary_path
from tinybert_infer.score.command import score_corpus
from tinybert_infer.score.ray_engine import DELAY_ENV, EXIT_ONCE_ENV

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    return tmp_path_factory.mktemp("ray_hooks")


@pytest.fixture(scope="module")
def ray_local(hooks):
    env = {"PYTHONPATH": str(ROOT), EXIT_ONCE_ENV: str(hooks / "exit_once"), DELAY_ENV: str(hooks / "delay")}
    ray.init(num_cpus=2, object_store_memory=256 << 20, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    yield
    ray.shutdown()


def run_both(tmp_path, checkpoint, onnx, corpus, **kwargs):
    """(local rows, ray rows, ray summary): predictions.tsv rows of each engine."""
    rows, summaries = {}, {}
    cpus_per_actor = kwargs.pop("cpus_per_actor", None)
    for engine in ("local", "ray"):
        extra = {"cpus_per_actor": cpus_per_actor} if engine == "ray" else {}
        summary, folder = score_corpus(corpus, engine=engine, model=onnx, model_dir=checkpoint,
                                       output_root=tmp_path / "result", show_progress=False, **kwargs, **extra)
        rows[engine] = read_predictions(folder / "predictions.tsv")
        summaries[engine] = summary
    return rows["local"], rows["ray"], summaries["ray"]


@pytest.mark.parametrize("cpus_per_actor, actors", [(None, 1), (1, 2)])
def test_ray_equals_local_row_for_row(ray_local, tmp_path, tiny_checkpoint, tiny_dyn_onnx, cpus_per_actor, actors):
    """Default: one 2-CPU actor on this 2-CPU Ray (2 threads; blocks of several chunks, the next one tokenised
    while this one infers); and two 1-CPU actors."""
    corpus = tmp_path / "corpus"
    write_shards(corpus, [40, 7, 65, 1, 30])
    local, remote, summary = run_both(tmp_path, tiny_checkpoint, tiny_dyn_onnx, corpus, chunk_rows=8,
                                      batch_size=4, cpus_per_actor=cpus_per_actor)
    assert remote == local  # header, order, (shard, index), labels, predictions and logits as printed
    assert len(local[1]) == 143 and summary["sentences"] == 143
    assert summary["ray"]["max_errored_blocks"] == 0 and summary["duplicate_rows_dropped"] == 0
    assert summary["ray"]["actors"] == actors and summary["plan"]["threads"] == 2 // actors
    assert summary["ray"]["cpus_per_actor"] == 2 // actors


def test_more_cpus_per_actor_than_any_node_is_refused(ray_local, tmp_path, tiny_checkpoint, tiny_dyn_onnx):
    """An actor no node can hold would wait forever: one line instead, before any work."""
    with pytest.raises(UsageError, match=r"^--cpus_per_actor 3: no node of the Ray cluster has that many CPUs "
                                         r"\(the largest has 2\)$"):
        score_corpus(write_tsv(tmp_path / "d.tsv"), engine="ray", model=tiny_dyn_onnx, model_dir=tiny_checkpoint,
                     output_root=tmp_path / "result", show_progress=False, cpus_per_actor=3)
    assert not (tmp_path / "result").exists()


def test_actor_killed_mid_run_every_row_once(ray_local, hooks, tmp_path, tiny_checkpoint, tiny_dyn_onnx):
    corpus = tmp_path / "corpus"
    write_shards(corpus, [50, 50, 50])
    (hooks / "exit_once").write_text("armed")
    local, remote, summary = run_both(tmp_path, tiny_checkpoint, tiny_dyn_onnx, corpus, chunk_rows=10)
    assert (hooks / "exit_once.fired").exists(), "no actor was killed"
    assert not (hooks / "exit_once").exists()
    keys = [(r[0], r[1]) for r in remote[1]]
    assert len(keys) == len(set(keys)) == 150
    assert remote == local


def test_bad_shard_stops_the_run_naming_file_and_line(ray_local, tmp_path, tiny_checkpoint, tiny_dyn_onnx):
    corpus = tmp_path / "corpus"
    write_shards(corpus, [20, 20])
    lines = ["sentence\tlabel"] + [f"{s}\t{label}" for s, label in SENTENCES] * 3
    lines[25] = "two\ttabs\t1"
    (corpus / "part-1.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as caught:
        score_corpus(corpus, engine="ray", model=tiny_dyn_onnx, model_dir=tiny_checkpoint,
                     output_root=tmp_path / "result", chunk_rows=4, show_progress=False)
    assert str(caught.value) == f"{corpus.resolve() / 'part-1.tsv'}:26: expected 2 tab-separated columns, found 3"
    assert not any((tmp_path / "result").iterdir())


def test_interrupted_driver_leaves_nothing_scoreable(tmp_path, tiny_checkpoint, tiny_dyn_onnx):
    """A driver of its own (subprocess, local Ray): Ctrl-C while actors work; exit 130, no folder left."""
    corpus = tmp_path / "corpus"
    write_shards(corpus, [1000, 1000])
    delay = tmp_path / "delay"
    delay.write_text("1.0")
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{DELAY_ENV: str(delay)})
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "tinybert_infer", "score", "--engine", "ray", "--tsv",
                             str(corpus), "--model_dir", str(tiny_checkpoint), "--model", str(tiny_dyn_onnx),
                             "--chunk_rows", "10", "--output", str(tmp_path / "result")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    folder = None
    while time.monotonic() < deadline and folder is None:
        tables = list((tmp_path / "result").glob("*/.staging/predictions.tsv"))
        spilled = list((tmp_path / "result").glob("*/.staging/run-*"))
        if tables and (spilled or tables[0].stat().st_size > 200):
            folder = tables[0].parent.parent
        elif proc.poll() is not None:
            pytest.fail(f"finished early: {proc.communicate()}")
        time.sleep(0.05)
    assert folder is not None, "no rows arrived in time"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not summary_path(folder).exists()
    if folder.exists():  # whatever is left must be refused
        assert (folder / INCOMPLETE_MARKER).exists()
        code, _, err = run_main("postprocess", "--result_dir", folder)
        assert_error(code, err, 5, "incomplete run")
