"""Graphs and artefacts are paired with their source by what they are, not by where they lie or when they were
written: a packed or static graph left from another export beside the dynamic one, or an artefact built from
an earlier graph copied in with its old file times, would otherwise score a corpus with the wrong model (exit
0, the old model's accuracy)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import WORDS, copy_exports
from error_helpers import run_main
from tinybert_infer.export.onnx import export_dynamic_checkpoint
from tinybert_infer.models.synthetic import write_random_checkpoint


@pytest.fixture(scope="module")
def other_network(tmp_path_factory, tiny_exports) -> dict:
    """Another random checkpoint with the tiny checkpoint's vocabulary and switches (so only the weights tell
    the two apart), exported --dynamic."""
    folder = tmp_path_factory.mktemp("other")
    checkpoint = write_random_checkpoint(folder / "other_model", words=WORDS, seed=7)
    report = export_dynamic_checkpoint(checkpoint, folder / "exports", tsv_path=tiny_exports["tsv"])
    return {"checkpoint": checkpoint, "dynamic": report.sim_path}


def _copy_in_with_old_times(src: Path, dst: Path) -> None:
    """What `cp -p`, `tar x` or `rsync -a` do: the file arrives with the time it had, here an hour ago."""
    shutil.copy2(src, dst)
    old = dst.stat().st_mtime - 3600
    os.utime(dst, (old, old))


def _torch_labels(checkpoint: Path, tsv: Path) -> list:
    from tinybert_infer.models.checkpoint import VOCAB_FILE, load_model
    from tinybert_infer.run.length import read_tsv_samples

    feats = read_tsv_samples(tsv, checkpoint / VOCAB_FILE).feats
    _, model = load_model(checkpoint)
    with torch.inference_mode():
        logits = model(*(torch.from_numpy(feats[n]) for n in ("input_ids", "segment_ids", "input_mask")))
    return logits.argmax(-1).tolist()


def test_a_packed_or_static_graph_of_another_network_is_never_a_candidate(tmp_path, tiny_checkpoint, tiny_exports,
                                                                         other_network):
    from tinybert_infer.plan.planner import candidate_plans, packed_model_beside

    exports = copy_exports(tiny_exports, tmp_path / "exports")
    dynamic, static = exports["dynamic"].sim_path, exports["static"].sim_path
    kinds = {p.batching for p in candidate_plans("fp32", dynamic_model=dynamic, batch_size=8, threads=2,
                                                 static_model=static)}
    assert kinds == {"packed", "length", "static"}  # one export's graphs: all of them are candidates

    _copy_in_with_old_times(other_network["dynamic"], dynamic)  # another model's dynamic graph dropped in
    assert packed_model_beside(dynamic) is None
    plans = candidate_plans("fp32", dynamic_model=dynamic, batch_size=8, threads=2, static_model=static)
    assert {p.batching for p in plans} == {"length"} and {p.model for p in plans} <= {
        str(dynamic), str(dynamic.with_name(dynamic.stem + ".onnxruntime-fused.onnx"))}

    want = _torch_labels(other_network["checkpoint"], exports["tsv"])
    assert want != _torch_labels(tiny_checkpoint, exports["tsv"])  # the two networks label the TSV differently
    code, _, err = run_main("score", "--tsv", exports["tsv"], "--model", dynamic, "--model_dir",
                            other_network["checkpoint"], "--data_dir", exports["tsv"].parent, "--precision", "fp32",
                            "--output", tmp_path / "scored", "--output_dirname", "s")
    assert code == 0, err
    rows = (tmp_path / "scored" / "s" / "predictions.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[2]) for r in rows] == want


def test_an_artefact_is_rebuilt_when_its_source_changes_whatever_the_file_times(tmp_path, tiny_exports,
                                                                               other_network, monkeypatch):
    import onnxruntime as ort

    from tinybert_infer.export import optimize
    from tinybert_infer.export.optimize import artefact_path, artefacts_fresh, build_artefacts

    exports = copy_exports(tiny_exports, tmp_path / "exports")
    dynamic = exports["dynamic"].sim_path
    fused = artefact_path(dynamic, "onnxruntime-fused")
    build_artefacts(dynamic, ["onnxruntime-fused"], batch_size=4, threads=1)
    assert artefacts_fresh(dynamic, ["onnxruntime-fused"])
    build_artefacts(dynamic, ["onnxruntime-fused"], batch_size=4, threads=1)  # fresh: kept as it is
    first_build = fused.stat().st_mtime_ns

    _copy_in_with_old_times(other_network["dynamic"], dynamic)
    assert fused.stat().st_mtime > dynamic.stat().st_mtime  # by file times the old artefact would look fresh
    assert not artefacts_fresh(dynamic, ["onnxruntime-fused"])

    def broken(*args, **kwargs):
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(optimize, "fuse_bert", broken)
    with pytest.raises(RuntimeError):
        build_artefacts(dynamic, ["onnxruntime-fused"], batch_size=4, threads=1)
    assert not artefacts_fresh(dynamic, ["onnxruntime-fused"])  # a build cut short is built again next time
    monkeypatch.undo()

    build_artefacts(dynamic, ["onnxruntime-fused"], batch_size=4, threads=1)
    assert artefacts_fresh(dynamic, ["onnxruntime-fused"]) and fused.stat().st_mtime_ns != first_build
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(5, 100, (3, 16)), "segment_ids": np.zeros((3, 16), np.int64),
             "input_mask": np.ones((3, 16), np.int64)}
    got, want = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
                 for p in (fused, other_network["dynamic"]))
    assert np.max(np.abs(got - want)) < 1e-4  # the fused graph is the new network's


def test_the_benchmark_reuses_a_static_export_only_of_the_same_network(tmp_path, tiny_checkpoint, other_network):
    from tinybert_infer.bench.prepare import export_for
    from tinybert_infer.models.checkpoint import read_checkpoint
    from tinybert_infer.models.specs import METADATA_NETWORK, read_onnx_metadata

    sim = export_for(tiny_checkpoint, 2, tmp_path)
    written = sim.stat().st_mtime_ns
    assert export_for(tiny_checkpoint, 2, tmp_path) == sim and sim.stat().st_mtime_ns == written  # reused
    other = Path(shutil.copytree(other_network["checkpoint"], tmp_path / "other_model"))
    for path in other.iterdir():
        os.utime(path, (1_000_000, 1_000_000))  # older than the export: by file times it would be reused
    export_for(other, 2, tmp_path)
    assert read_onnx_metadata(sim)[METADATA_NETWORK] == read_checkpoint(other).network_digest
