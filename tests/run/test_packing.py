"""Packed batching (tinybert_infer.run.packing) and the packed graph: rows filled with whole sentences, each
sentence's logits those of the unpacked model, and the ais_bench result folder of the other paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinybert_infer.errors import UsageError
from tinybert_infer.layout import PACKED_SLOTS, packed_sim_onnx_name
from tinybert_infer.run.packing import pack_rows, packed_feeds, plan_packed_batches, slot_rows


def test_pack_rows_places_every_sentence_once_within_the_width_and_the_slots():
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(3, 56, 500), [64, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    rows = pack_rows(lengths, 64, slots=8)
    placed = sorted(i for row in rows for i in row)
    assert placed == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 64 and 1 <= len(row) <= 8 for row in rows)
    # best-fit decreasing leaves little room: within 5 % of the fewest rows the tokens could fill
    assert len(rows) <= 1.05 * np.ceil(lengths.sum() / 64) + 2


def test_pack_rows_refuses_a_sentence_longer_than_the_row():
    with pytest.raises(UsageError, match="1..64"):
        pack_rows([10, 65], 64)


def test_packed_feeds_lay_sentences_end_to_end_with_their_own_positions():
    feats = {"input_ids": np.array([[101, 5, 102, 0], [101, 7, 8, 102], [101, 102, 0, 0]]),
             "segment_ids": np.array([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]),
             "input_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]])}
    lengths = np.array([3, 4, 2])
    (batch,) = plan_packed_batches(lengths, 8, width=5, slots=2)
    assert batch.rows == ((1,), (0, 2))
    f = packed_feeds(feats, lengths, batch, 5, slots=2)
    assert f["input_ids"].tolist() == [[101, 7, 8, 102, 0], [101, 5, 102, 101, 102]]
    assert f["segment_ids"].tolist() == [[0, 0, 1, 1, 0], [0, 0, 0, 0, 0]]
    assert f["position_ids"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert f["sentence_ids"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 2, 2]]
    assert f["cls_index"].tolist() == [[0, 0], [0, 3]]
    assert list(slot_rows(batch, slots=2)) == [(0, 1), (2, 0), (3, 2)]


@pytest.mark.parametrize("relu_head", [True, False])
def test_the_packed_module_gives_every_sentence_the_unpacked_models_logits(tiny_checkpoint, relu_head):
    from conftest import random_batch
    from tinybert_infer.models.checkpoint import load_model
    from tinybert_infer.models.modeling import PackedSequenceClassifier
    from tinybert_infer.run.length import real_lengths

    import dataclasses

    _, model = load_model(tiny_checkpoint)
    model.config = dataclasses.replace(model.config, relu_head=relu_head)  # either head reads the same [CLS] rows
    ids, segments, mask = random_batch(model.config.vocab_size, lengths=(1, 5, 17, 64, 30, 2, 9, 3, 40, 11))
    feats = {"input_ids": ids.numpy(), "segment_ids": segments.numpy(), "input_mask": mask.numpy()}
    with torch.inference_mode():
        expected = model(*(torch.from_numpy(feats[n]) for n in ("input_ids", "segment_ids", "input_mask"))).numpy()
    lengths = real_lengths(feats["input_mask"])
    packed = PackedSequenceClassifier(model).eval()
    got = np.empty_like(expected)
    batches = plan_packed_batches(lengths, 2, width=64)
    assert max(len(row) for b in batches for row in b.rows) > 1  # rows really hold several sentences
    for batch in batches:
        f = packed_feeds(feats, lengths, batch, 64)
        with torch.inference_mode():
            out = packed(*(torch.from_numpy(f[n]) for n in ("input_ids", "segment_ids", "position_ids",
                                                               "sentence_ids", "cls_index"))).numpy()
        assert out.shape == (len(batch.rows), PACKED_SLOTS, expected.shape[1])
        flat = out.reshape(-1, expected.shape[1])
        for row, index in slot_rows(batch):
            got[index] = flat[row]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_export_dynamic_writes_the_packed_graphs_validated_against_pytorch(tiny_exports):
    report = tiny_exports["dynamic"]
    plain, sim = report.packed_paths
    assert sim.name == packed_sim_onnx_name() and plain.is_file() and sim.is_file()
    assert all(max(pair) < 1e-4 for pair in report.packed_diffs.values()) and "PyTorch" in report.packed_diffs


def test_a_packed_plan_writes_the_static_paths_result_folder(tiny_exports, tiny_checkpoint, tmp_path):
    from conftest import copy_exports
    from tinybert_infer.models.checkpoint import VOCAB_FILE
    from tinybert_infer.plan.planner import Plan, open_plan, packed_model_beside
    from tinybert_infer.run.length import read_tsv_samples
    from tinybert_infer.run.results import read_logits

    m = copy_exports(tiny_exports, tmp_path / "models")
    samples = read_tsv_samples(m["tsv"], tiny_checkpoint / VOCAB_FILE)
    stems = [f"input{i}" for i in range(samples.count)]
    folders = {}
    for name, plan in {
        "static": Plan("onnxruntime", str(m["static"].sim_path), "static", 4, "fixed", threads=1),
        "packed": Plan("openvino-fp32", str(packed_model_beside(m["dynamic"].sim_path)), "packed", 2, "fixed",
                       streams=2, threads=2),
    }.items():
        with open_plan(plan) as executor:
            folders[name] = executor.run_samples(samples, tmp_path / "result", output_dirname=name,
                                                 show_progress=False).result_dir
    logits = {n: read_logits(d, stems, 2) for n, d in folders.items()}
    np.testing.assert_array_equal(logits["packed"].argmax(1), logits["static"].argmax(1))
    np.testing.assert_allclose(logits["packed"], logits["static"], atol=1e-4)
    summary = json.loads((tmp_path / "result" / "packed_summary.json").read_text())
    assert summary["mode"] == "packed" and summary["plan"]["batching"] == "packed"
    assert summary["real_tokens"] == int(samples.lengths.sum()) <= summary["padded_tokens"]
    assert summary["backend"]["compiled_lengths"] == [64]  # one static shape


def test_a_packed_plan_refuses_a_model_without_the_packed_inputs(tiny_exports):
    from tinybert_infer.plan.planner import Plan, open_plan

    with pytest.raises(UsageError, match="packed model"):
        open_plan(Plan("onnxruntime", str(tiny_exports["dynamic"].sim_path), "packed", 2, "fixed", threads=1))


def test_the_planner_offers_packed_plans_only_where_the_packed_model_is(tiny_exports, tmp_path):
    import shutil

    from tinybert_infer.plan.planner import candidate_plans, packed_rows

    dyn = tiny_exports["dynamic"].sim_path
    plans = candidate_plans("fp32", dynamic_model=dyn, batch_size=32, threads=2)
    packed = [p for p in plans if p.batching == "packed"]
    assert packed and plans[0] in packed  # preferred: one compile, fewest tokens
    assert {p.batch_size for p in packed} == {packed_rows(32)} and {p.streams for p in packed} == {1, 2}
    assert all(p.model.endswith(packed_sim_onnx_name()) for p in packed)
    alone = tmp_path / dyn.name  # an export from before packing: no packed file beside it
    shutil.copy(dyn, alone)
    assert not [p for p in candidate_plans("fp32", dynamic_model=alone, batch_size=32, threads=2)
                if p.batching == "packed"]


def test_infer_auto_times_the_packed_plans_and_keeps_the_labels(tiny_exports, tiny_checkpoint, tmp_path):
    from conftest import copy_exports, run_cli_in_process

    m = copy_exports(tiny_exports, tmp_path)
    env = {"TINYBERT_MODEL_DIR": str(tiny_checkpoint)}
    common = ("--batchsize", "4", "--output", "result", "--outfmt", "TXT", "--threads", "2", "--tsv", m["tsv"])
    run_cli_in_process("infer", "--backend", "onnxruntime", "--output_dirname", "exact", *common, "-m",
                       m["dynamic"].sim_path, "--dynamic_length", cwd=tmp_path, env=env, check=True)
    run_cli_in_process("infer", "--dynamic_length", "--output_dirname", "planned", *common, "-m",
                       m["dynamic"].sim_path, cwd=tmp_path, env=env, check=True)
    planned = json.loads((tmp_path / "result" / "planned_summary.json").read_text())
    assert any(" packed " in label for label in planned["plan_selection"]["samples_per_s"])
    texts = {n: sorted(p.read_text() for p in (tmp_path / "result" / n).glob("*.txt")) for n in ("exact", "planned")}
    labels = {n: [int(np.argmax(np.array(t.split(), float))) for t in v] for n, v in texts.items()}
    assert labels["exact"] == labels["planned"] and len(labels["exact"]) == 13


def test_the_planner_leaves_packed_plans_out_for_sentences_wider_than_a_row(tiny_exports, monkeypatch):
    import tinybert_infer.plan.planner as plan_module

    timed = []

    def fake_time_plans(candidates, feats, **kw):
        timed.extend(p.batching for p in candidates)
        return {p.label(): [100.0] * 3 for p in candidates}, {}

    monkeypatch.setattr(plan_module, "time_plans", fake_time_plans)
    monkeypatch.setattr(plan_module, "build_candidate_artefacts", lambda *a, **k: None)
    wide = [[101] + [7] * 98 + [102]]  # 100 tokens: longer than the packed graph's 64-token rows
    choice = plan_module.make_plan(dynamic_model=tiny_exports["dynamic"].sim_path, batch_size=4, threads=1, data=wide,
                                   use_cache=False, log=lambda s: None)
    assert timed and "packed" not in timed and choice.plan.batching == "length"


def test_an_open_packed_plan_warms_up_once_and_its_next_job_gives_the_same_logits(tiny_exports, tiny_checkpoint,
                                                                                   tmp_path):
    """ais_bench's warm-up runs on the cold plan only: the FlatOutputs made afresh for each run still sees the
    runtime warm, so a served plan does not pay a batch per job (8 % of it: shared checkpoint, AMX)."""
    from conftest import copy_exports
    from tinybert_infer.models.checkpoint import VOCAB_FILE
    from tinybert_infer.plan.planner import Plan, open_plan, packed_model_beside
    from tinybert_infer.run.length import read_tsv_samples
    from tinybert_infer.run.results import read_logits

    m = copy_exports(tiny_exports, tmp_path / "models")
    samples = read_tsv_samples(m["tsv"], tiny_checkpoint / VOCAB_FILE)
    stems = [f"input{i}" for i in range(samples.count)]
    plan = Plan("openvino-fp32", str(packed_model_beside(m["dynamic"].sim_path)), "packed", 2, "fixed", streams=2,
                threads=2)
    with open_plan(plan) as executor:
        reports = [executor.run_samples(samples, tmp_path / "result", output_dirname=f"job{k}", show_progress=False)
                   for k in range(2)]
    assert [r.summary["warmup_runs"] for r in reports] == [1, 0]
    for k in range(2):
        assert json.loads((tmp_path / "result" / f"job{k}_summary.json").read_text())["warmup_runs"] == [1, 0][k]
    first, second = (read_logits(r.result_dir, stems, 2) for r in reports)
    np.testing.assert_array_equal(first, second)
