"""Run plans (tinybert_infer.plan.planner): shape policies, streams x length-aware x precision, the planner and its cache,
the plan in every summary. Tiny random checkpoints only."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import ROOT, run_cli_in_process
from tinybert_infer.run.length import read_tsv_samples
from tinybert_infer.errors import UsageError
from tinybert_infer.layout import SELECTION_CACHE_NAME
from tinybert_infer.plan.planner import (DEFAULT_BUCKETS, Plan, as_features, make_plan, open_plan, pick, plan_of_backend)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_checkpoint, tiny_exports):
    """The tiny checkpoint's static (bs 4) and dynamic exports, its TSV and bert_bin, in this module's folder
    (the artefacts built below land beside them)."""
    from conftest import copy_exports
    from tinybert_infer.models.checkpoint import VOCAB_FILE

    m = copy_exports(tiny_exports, tmp_path_factory.mktemp("plan_models"))
    feats = read_tsv_samples(m["tsv"], tiny_checkpoint / VOCAB_FILE).feats
    return {"work": m["dir"], "tsv": m["tsv"], "static": m["static"].sim_path, "dynamic": m["dynamic"].sim_path,
            "feats": feats}


def _static_logits(models):
    with open_plan(Plan("onnxruntime", str(models["static"]), "static", 4, "fixed", threads=1)) as executor:
        return executor.score(models["feats"])


def _fused(models):
    from tinybert_infer.export.optimize import artefact_path, build_artefacts

    build_artefacts(models["dynamic"], ["onnxruntime-fused"], batch_size=4, threads=1)
    return str(artefact_path(models["dynamic"], "onnxruntime-fused"))


def _packed(models):
    from tinybert_infer.plan.planner import packed_model_beside

    return packed_model_beside(models["dynamic"])


# ---------------------------------------------------------------- every shape policy: the static path's labels
@pytest.mark.parametrize("make", [
    lambda m: Plan("onnxruntime", str(m["dynamic"]), "length", 4, "dynamic", threads=1),
    lambda m: Plan("onnxruntime", str(m["dynamic"]), "length", 3, "dynamic", pad_multiple=8, threads=1),
    lambda m: Plan("onnxruntime-fused", _fused(m), "length", 4, "dynamic", threads=1),
    lambda m: Plan("openvino-fp32", str(m["dynamic"]), "length", 4, "dynamic", streams=2, threads=2),
    lambda m: Plan("openvino-fp32", str(m["dynamic"]), "length", 4, "per_length", DEFAULT_BUCKETS, threads=2),
    lambda m: Plan("openvino-fp32", str(m["dynamic"]), "length", 5, "per_length", (8, 16), streams=2, threads=2),
    lambda m: Plan("openvino-fp32", str(m["static"]), "static", 4, "fixed", threads=2),
    lambda m: Plan("onnxruntime", str(_packed(m)), "packed", 2, "fixed", threads=1),
    lambda m: Plan("openvino-fp32", str(_packed(m)), "packed", 1, "fixed", threads=2),
    lambda m: Plan("openvino-fp32", str(_packed(m)), "packed", 3, "fixed", streams=2, threads=2),
], ids=["onnxruntime-longest", "onnxruntime-pad8", "onnxruntime-fused", "ov-dynamic-2streams", "ov-per-length",
        "ov-per-length-2streams", "ov-static", "onnxruntime-packed", "ov-packed", "ov-packed-2streams"])
def test_every_fp32_shape_policy_gives_the_static_paths_labels_and_logits(models, make):
    plan = make(models)
    expected = _static_logits(models)
    with open_plan(plan) as executor:
        got = executor.score(models["feats"])
        got_again = executor.score(models["feats"])  # compiled shapes reused, same numbers
    assert got.shape == expected.shape == (13, 2)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    assert np.max(np.abs(got - expected)) <= 1e-4
    np.testing.assert_array_equal(got, got_again)


def test_per_length_compiles_one_static_shape_per_length_and_fills_partial_batches(models):
    plan = Plan("openvino-fp32", str(models["dynamic"]), "length", 4, "per_length", (8, 16, 32), threads=1)
    with open_plan(plan) as executor:
        executor.score(models["feats"])
        info = executor.backend.describe()
        # 13 sentences at batch 4: lengths rounded to the buckets (longer ones: the width 64); never a new batch
        assert set(info["compiled_lengths"]) <= {8, 16, 32, 64} and info["static_batch"] == 4
        five = {k: v[:5] for k, v in models["feats"].items()}  # one full batch + one row filled up to 4
        np.testing.assert_allclose(executor.backend.run({k: v[:, :64] for k, v in five.items()}),
                                   _static_logits(models)[:5], atol=1e-4)
        # Warm for the shapes it has compiled only: a new length's first batch still gets ais_bench's warm-up.
        executor.backend.warm = True
        assert executor.backend.warm_for({k: v[:, :64] for k, v in five.items()})
        assert not executor.backend.warm_for({k: v[:, :12] for k, v in five.items()})


def test_token_rows_of_any_length_score_like_padded_features(models):
    feats = models["feats"]
    rows = [feats["input_ids"][i][feats["input_mask"][i] == 1] for i in range(13)]
    with open_plan(Plan("onnxruntime", str(models["dynamic"]), "length", 4, "dynamic", threads=1)) as executor:
        np.testing.assert_allclose(executor.score(rows), _static_logits(models), atol=1e-4)
    assert as_features([[101, 7, 102], [101, 102]])["input_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


# ---------------------------------------------------------------- streams x length-aware x precision
@pytest.mark.parametrize("precision", ["bf16", "int8", "int8-bf16"])
def test_streams_and_per_length_shapes_compose_with_low_precision(models, tiny_checkpoint, precision):
    from tinybert_infer.export.optimize import artefact_path, nncf_available
    from tinybert_infer.plan.planner import build_candidate_artefacts

    if precision.startswith("int8") and not nncf_available():
        pytest.skip("nncf not installed")
    name = f"openvino-{precision}"
    path = str(artefact_path(models["dynamic"], name))
    plans = [Plan(name, path, "length", 4, "per_length", DEFAULT_BUCKETS, streams=s, threads=2) for s in (1, 2)]
    plans.append(Plan(name, path, "length", 4, "dynamic", streams=2, threads=2))
    packed = str(artefact_path(_packed(models), name))
    plans += [Plan(name, packed, "packed", 2, "fixed", streams=s, threads=2) for s in (1, 2)]
    build_candidate_artefacts(plans, models["dynamic"], batch_size=4, threads=2, checkpoint_dir=tiny_checkpoint,
                              calibration_tsv=models["tsv"])
    results = []
    for plan in plans:
        with open_plan(plan) as executor:
            results.append(executor.score(models["feats"]))
    one_stream, two_streams, dynamic, packed_one, packed_two = results
    np.testing.assert_array_equal(one_stream, two_streams)  # same compiled shapes: streams change no number
    np.testing.assert_array_equal(packed_one, packed_two)
    assert np.all(np.isfinite(dynamic)) and dynamic.shape == one_stream.shape
    # low precision stays close to exact fp32 on the same sentences, packed or not
    assert np.max(np.abs(one_stream - _static_logits(models))) < 0.5
    assert np.max(np.abs(packed_one - _static_logits(models))) < 0.5


def test_ort_int8_runs_packed_from_the_plain_graph_and_is_a_candidate(models, tiny_checkpoint):
    from tinybert_infer.export.optimize import artefact_path, artefacts_fresh
    from tinybert_infer.plan.planner import build_candidate_artefacts, candidate_plans

    plans = [p for p in candidate_plans("int8", dynamic_model=models["dynamic"], batch_size=8, threads=2)
             if p.variant == "onnxruntime-int8-dynamic"]
    assert [p.batching for p in plans] == ["packed", "length"]  # packed preferred
    packed_plan = plans[0]
    assert packed_plan.model == str(artefact_path(_packed(models), "onnxruntime-int8-dynamic"))
    assert packed_plan.batch_size == 4  # rows of 64 hold several sentences: BS 8 runs as 4 rows
    build_candidate_artefacts([packed_plan], models["dynamic"], batch_size=8, threads=2,
                              checkpoint_dir=tiny_checkpoint, calibration_tsv=models["tsv"])
    # quantised from the plain packed graph: no fused packed graph is written, and the artefact counts as built
    assert not artefact_path(_packed(models), "onnxruntime-fused").exists()
    assert artefacts_fresh(_packed(models), ["onnxruntime-int8-dynamic"])
    with open_plan(packed_plan) as executor:
        logits = executor.score(models["feats"])
    assert np.max(np.abs(logits - _static_logits(models))) < 0.5


def test_the_per_length_model_cache_keeps_precisions_apart(models, tmp_path):
    """OpenVINO 2026.4's cache key leaves the precision hint out: a bf16 compile importing the blob of an earlier
    f32 compile gave wrong logits on an AMX CPU (or crashed with two streams). One cache folder per hint."""
    from tinybert_infer.backends.openvino import OpenVinoStaticShapes
    from tinybert_infer.plan.planner import PlanExecutor

    dyn, cache = models["dynamic"], tmp_path / "ov_cache"

    def score(precision, streams, cached=True):
        plan = Plan(f"openvino-{precision}", str(dyn), "length", 4, "per_length", (16, 32), streams=streams,
                    threads=2)
        backend = OpenVinoStaticShapes(dyn, batch_size=4, threads=2, precision=precision, streams=streams,
                                       cache_dir=cache if cached else None)
        with PlanExecutor(plan, backend) as executor:
            return executor.score(models["feats"])

    uncached = {p: score(p, 1, cached=False) for p in ("fp32", "bf16")}
    np.testing.assert_array_equal(score("fp32", 1), uncached["fp32"])  # fills the cache with f32 blobs
    for streams in (1, 2):
        np.testing.assert_array_equal(score("bf16", streams), uncached["bf16"])
        np.testing.assert_array_equal(score("fp32", streams), uncached["fp32"])
    assert sorted(p.name for p in cache.iterdir()) == ["bf16", "f32"]


def test_plan_refuses_combinations_that_cannot_run(models):
    with pytest.raises(UsageError, match="per_length"):
        Plan("onnxruntime", str(models["dynamic"]), "length", 4, "per_length")
    with pytest.raises(UsageError, match="streams"):
        Plan("onnxruntime", str(models["dynamic"]), "length", 4, "dynamic", streams=2)
    with pytest.raises(UsageError, match="static sequence length"):
        open_plan(Plan("onnxruntime", str(models["static"]), "length", 4, "dynamic"))
    plan = Plan("openvino-bf16", "m.onnx", "length", 8, "per_length", (16, 32), streams=2, threads=2)
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert plan.precision == "bf16" and plan.runtime == "openvino"


# ---------------------------------------------------------------- the planner: choice, margin, cache
def test_the_preferred_plan_stays_unless_another_is_faster_by_the_margin():
    a = Plan("openvino-fp32", "m.onnx", "length", 8, "per_length", DEFAULT_BUCKETS)
    b = Plan("onnxruntime-fused", "m.onnx", "length", 8, "dynamic")
    assert pick([a, b], {a.label(): 100.0, b.label(): 108.0}, margin=0.1) == a  # noise-sized gain: keep a
    assert pick([a, b], {a.label(): 100.0, b.label(): 125.0}, margin=0.1) == b
    # for a job of N sentences, setup + N / rate decides
    setup = {a.label(): 4.0, b.label(): 0.5}
    assert pick([a, b], {a.label(): 125.0, b.label(): 100.0}, 0.1, setup, job_size=872) == b   # 11.0 s vs 9.2 s
    assert pick([a, b], {a.label(): 125.0, b.label(): 100.0}, 0.1, setup, job_size=100_000) == a


def test_planner_measures_on_the_data_caches_its_choice_and_measures_again_for_a_new_model(models, tmp_path,
                                                                                        monkeypatch):
    import tinybert_infer.plan.planner as plan_module

    dyn = tmp_path / "TinyBERT_sim_dyn.onnx"
    shutil.copy(models["dynamic"], dyn)
    plans = [Plan("onnxruntime", str(dyn), "length", 4, "dynamic", threads=1),
             Plan("openvino-fp32", str(dyn), "length", 4, "per_length", (16, 32), threads=1)]
    seen = []
    real_time_plans = plan_module.time_plans

    def fake_time_plans(candidates, feats, **kw):
        seen.append(len(feats["input_ids"]))
        real_time_plans(candidates, feats, rounds=1, sweeps=1)  # really runs each candidate once
        return ({plans[0].label(): [100.0, 90.0, 110.0], plans[1].label(): [200.0, 150.0, 250.0]},
                {plans[0].label(): 0.1, plans[1].label(): 5.0})

    monkeypatch.setattr(plan_module, "time_plans", fake_time_plans)
    logs = []
    choice = make_plan(dynamic_model=dyn, batch_size=4, threads=1, candidates=plans, data=models["feats"],
                       log=logs.append)
    assert choice.plan == plans[1] and choice.selection["cached"] is False and seen == [13]
    assert choice.selection["samples_per_s"] == {plans[0].label(): 100.0, plans[1].label(): 200.0}
    cache = json.loads((tmp_path / SELECTION_CACHE_NAME).read_text())
    assert [e["plan"]["label"] for e in cache.values()] == [plans[1].label()]
    again = make_plan(dynamic_model=dyn, batch_size=4, threads=1, candidates=plans, data=models["feats"])
    assert again.plan == plans[1] and again.selection["cached"] is True and seen == [13]  # not measured again
    # A short job: plans[1]'s 5 s of setup outweigh its 2x steady rate (100 sentences: 5.5 s against 1.1 s), a long
    # one pays it back; both answered from the same cached measurements.
    short = make_plan(dynamic_model=dyn, batch_size=4, threads=1, candidates=plans, data=models["feats"], job_size=100)
    long = make_plan(dynamic_model=dyn, batch_size=4, threads=1, candidates=plans, data=models["feats"],
                     job_size=100_000)
    assert (short.plan, long.plan) == (plans[0], plans[1]) and seen == [13]
    assert short.selection["plan"]["label"] == plans[0].label() and short.selection["job_size"] == 100
    # A changed model (new sha256): the cached choice no longer applies.
    import onnx

    changed = onnx.load(str(dyn))
    changed.doc_string = "re-exported"
    onnx.save(changed, str(dyn))
    third = make_plan(dynamic_model=dyn, batch_size=4, threads=1, candidates=plans, data=models["feats"])
    assert third.selection["cached"] is False and seen == [13, 13]


def test_candidates_are_timed_one_open_at_a_time_in_alternating_sweeps_and_slow_ones_drop_out(monkeypatch):
    """Peak memory is one plan's: never two executors open at once. Sweep 2 runs in reverse order and skips what
    the first sweep found below keep_within of the fastest; setup = open + first pass - a warm pass."""
    import tinybert_infer.plan.planner as plan_module

    speed = {"onnxruntime": 100.0, "onnxruntime-fused": 200.0, "onnxruntime-int8-dynamic": 40.0}  # samples/s
    a, b, c = speed
    events, open_now = [], []

    class Fake:
        def __init__(self, plan):
            self.key = plan.variant
            open_now.append(self.key)
            assert len(open_now) == 1, f"{open_now} open together"
            self.warm = False

        def score(self, feats):
            import time

            events.append(self.key)
            time.sleep(len(feats["input_ids"]) / speed[self.key] + (0.0 if self.warm else 0.05))  # 50 ms setup
            self.warm = True

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            open_now.remove(self.key)

    monkeypatch.setattr(plan_module, "open_plan", Fake)
    plans = [Plan(k, "m.onnx", "length", 4, "dynamic") for k in speed]
    rates, setup = plan_module.time_plans(plans, {"input_ids": np.zeros((4, 8))}, rounds=2, keep_within=0.3)
    # sweep 1: a b c (a warm-up and 2 timed passes each); sweep 2, reversed, without c (40 < 0.3 x 200)
    assert events == [a] * 3 + [b] * 3 + [c] * 3 + [b] * 3 + [a] * 3
    assert [len(rates[p.label()]) for p in plans] == [4, 4, 2]
    assert rates[plans[1].label()][0] == pytest.approx(200.0, rel=0.3)
    assert all(0.03 < setup[p.label()] < 0.2 for p in plans)


def test_a_changed_candidate_set_is_measured_again_not_answered_from_the_cache(models, tmp_path, monkeypatch):
    import tinybert_infer.plan.planner as plan_module

    dyn = tmp_path / "TinyBERT_sim_dyn.onnx"
    shutil.copy(models["dynamic"], dyn)
    measured = []

    def fake_time_plans(candidates, feats, **kw):
        measured.append(sorted(p.label() for p in candidates))
        return {p.label(): [100.0 + 10 * i] * 3 for i, p in enumerate(candidates)}, {}

    monkeypatch.setattr(plan_module, "time_plans", fake_time_plans)
    ort = Plan("onnxruntime", str(dyn), "length", 4, "dynamic", threads=1)
    buckets = Plan("openvino-fp32", str(dyn), "length", 4, "per_length", (16, 32), threads=1)
    rounded = Plan("openvino-fp32", str(dyn), "length", 4, "per_length", pad_multiple=4, threads=1)
    for candidates in ([ort, buckets], [buckets, ort], [ort, rounded]):
        make_plan(dynamic_model=dyn, batch_size=4, threads=1, candidates=candidates, data=models["feats"],
                  log=lambda s: None)
    # the same set in another order is the same question; a new candidate makes it a new one
    assert measured == [sorted([ort.label(), buckets.label()]), sorted([ort.label(), rounded.label()])]


def test_a_choice_cached_on_another_instruction_set_is_measured_again(models, tmp_path, monkeypatch):
    """Virtual machines name a VNNI and a non-VNNI host alike ("AMD EPYC"); int8 and bf16 compute differently
    on them, so a cached choice (timings and accuracy verdicts) holds only for the instruction sets it was made on."""
    import tinybert_infer.machine as machine
    import tinybert_infer.plan.planner as plan_module

    dyn = tmp_path / "TinyBERT_sim_dyn.onnx"
    shutil.copy(models["dynamic"], dyn)
    measured = []

    def fake_time_plans(candidates, feats, **kw):
        measured.append(1)
        return {p.label(): [100.0] * 3 for p in candidates}, {}

    monkeypatch.setattr(plan_module, "time_plans", fake_time_plans)
    monkeypatch.setattr(machine, "cpu_model", lambda: "AMD EPYC")
    ort = Plan("onnxruntime", str(dyn), "length", 4, "dynamic", threads=1)
    hosts = [{"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, {"avx2"}, {"avx2", "avx512f", "avx512_vnni",
                                                                              "avx512_bf16", "fpu"}]
    for flags in hosts:
        monkeypatch.setattr(machine, "cpu_flags", lambda flags=flags: set(flags))
        make_plan(dynamic_model=dyn, batch_size=4, threads=1, candidates=[ort], data=models["feats"],
                  log=lambda s: None)
    assert len(measured) == 2  # the third host computes like the first: its cached choice holds
    keys = json.loads((tmp_path / SELECTION_CACHE_NAME).read_text())
    assert sorted(k.split("|")[6] for k in keys) == ["AMD EPYC [avx2 avx512f avx512_vnni avx512_bf16]",
                                                     "AMD EPYC [avx2]"]


# ---------------------------------------------------------------- the plan in every summary
def test_every_infer_run_records_its_plan(models, tiny_checkpoint, tmp_path):
    shutil.copy(models["dynamic"], tmp_path / "TinyBERT_sim_dyn.onnx")
    shutil.copy(models["static"], tmp_path / "TinyBERT_sim_bs4.onnx")
    env = {"TINYBERT_MODEL_DIR": str(tiny_checkpoint)}
    bins = ",".join(str(models["work"] / "bert_bin" / n) for n in ("input_ids", "segment_ids", "input_mask"))
    common = ("--batchsize", "4", "--output", "result", "--outfmt", "TXT", "--threads", "1")
    run_cli_in_process("infer", "--input", bins, "--backend", "onnxruntime", "--output_dirname", "static", *common,
                       cwd=tmp_path, env=env, check=True)
    run_cli_in_process("infer", "--dynamic_length", "--tsv", models["tsv"], "--output_dirname", "planned", *common,
                       cwd=tmp_path, env=env, check=True)
    run_cli_in_process("infer", "--dynamic_length", "--static_shapes", "--buckets", "16,32", "--tsv", models["tsv"],
                       "--output_dirname", "shapes", *common, cwd=tmp_path, env=env, check=True)
    summaries = {n: json.loads((tmp_path / "result" / f"{n}_summary.json").read_text())
                 for n in ("static", "planned", "shapes")}
    assert summaries["static"]["plan"]["batching"] == "static" and summaries["static"]["plan"]["variant"] == "onnxruntime"
    planned = summaries["planned"]
    assert planned["plan"]["batching"] == "length" and planned["plan"]["precision"] == "fp32"
    assert planned["plan_selection"]["plan"]["label"] == planned["plan"]["label"]
    assert planned["plan_selection"]["cached"] is False and len(planned["plan_selection"]["samples_per_s"]) >= 3
    assert summaries["shapes"]["plan"]["shape_policy"] == "per_length"
    assert summaries["shapes"]["plan"]["buckets"] == [16, 32] and summaries["shapes"]["backend"]["compiled_lengths"]
    outputs = {n: sorted(p.read_text() for p in (tmp_path / "result" / n).glob("*.txt")) for n in summaries}
    labels = {n: [int(np.argmax(np.array(t.split(), float))) for t in v] for n, v in outputs.items()}
    assert labels["static"] == labels["planned"] == labels["shapes"]


def test_plan_of_a_named_backend_describes_what_ran(models):
    from tinybert_infer.backends import make_backend

    backend = make_backend("openvino", onnx_path=models["dynamic"], threads=2, precision="bf16", streams=2)
    plan = plan_of_backend(backend, models["dynamic"], batching="length", batch_size=8, buckets=(16, 32))
    assert (plan.variant, plan.shape_policy, plan.streams, plan.threads, plan.buckets) == (
        "openvino-bf16", "dynamic", 2, 2, (16, 32))


@pytest.mark.parametrize("ort_rate, expected", [(105.0, "openvino-fp32"), (150.0, "onnxruntime")])
def test_auto_keeps_its_preferred_fp32_artefact_unless_another_is_clearly_faster(models, tmp_path, monkeypatch,
                                                                                 ort_rate, expected):
    import tinybert_infer.plan.select as select

    local = tmp_path / models["static"].name
    shutil.copy(models["static"], local)
    rates = {"onnxruntime": ort_rate, "onnxruntime-fused": 90.0, "openvino-fp32": 100.0}
    calls = []

    def fake_measure(backend, batch, policy, **kw):
        calls.append(backend.variant)
        return {"samples_per_s": rates[backend.variant]}

    monkeypatch.setattr(select, "measure_backend", fake_measure)
    chosen = select.choose_backend(local, batch_size=4, threads=1, log=lambda s: None)
    assert chosen.variant == expected
    # interleaved rounds: every candidate once per round, in turn
    assert calls[:3] == calls[3:6] == ["onnxruntime", "onnxruntime-fused", "openvino-fp32"]
    chosen.close()


@pytest.mark.slow  # about a minute on 2 cores: exports, a planner, PyTorch's labels
def test_real_job_section_rows_on_a_tiny_checkpoint(tiny_checkpoint, tmp_path):
    from conftest import write_tsv
    from tinybert_infer.models.checkpoint import read_checkpoint
    from tinybert_infer.bench.realjob import real_job_flops, real_job_section
    from tinybert_infer.bench.report import real_job_section_lines

    config = read_checkpoint(tiny_checkpoint).config
    # two sentences of 10 and 30 tokens: the mean of their own FLOPs, far below the padded-to-64 figure
    assert real_job_flops(config, [10, 30]) == pytest.approx(
        (config.executed_flops_per_sample(10) + config.executed_flops_per_sample(30)) / 2)
    data = tmp_path / "SST-2"
    write_tsv(data / "dev.tsv")
    rates = {"gflops": {"fp32": 100.0, "bf16": None, "int8": None}}
    section = real_job_section(model_dir=tiny_checkpoint, data_dir=data, work=tmp_path / "work", threads=1,
                               rates=rates, batch=4, precisions=["fp32"], repeats=1)
    kinds = [(r["model"], r["kind"]) for r in section["rows"]]
    assert kinds == [("checkpoint", "static-64"), ("checkpoint", "recommended")]
    for row in section["rows"]:  # fp32 plans: PyTorch's label on every sentence
        assert row["labels_differ_from_pytorch"] == 0 and 0 < row["fraction_of_real_job_limit"]
    # each precision's planner and plans ran in a process of its own: the peak RSS reported is theirs
    assert set(section["peak_rss_mb_per_job"]) == {"checkpoint fp32"}
    assert section["peak_rss_mb"] == section["peak_rss_mb_per_job"]["checkpoint fp32"] > 0
    text = "\n".join(real_job_section_lines(section))
    assert "Real job" in text and "recommended >= 2x static-64" in text and "in their own process" in text


@pytest.mark.slow
def test_plan_stability_counts_each_fresh_choice(models):
    from tinybert_infer.bench.realjob import plan_stability

    result = plan_stability(models["dynamic"], models["feats"], precision="fp32", batch=4, threads=1, runs=2)
    assert sum(result["picks"].values()) == 2 and len(result["samples_per_s_per_run"]) == 2
    assert sum(result["picks_for_the_job"].values()) == 2 and result["job_size"] == len(models["feats"]["input_ids"])


def _labelling_executor(labels, wrong_count):
    """open_plan's stand-in for the gate: a plan's executor that gets the first wrong_count(plan) labels wrong."""
    class Executor:
        def __init__(self, plan):
            self.plan = plan

        def score(self, feats):
            predicted = labels.copy()
            predicted[:wrong_count(self.plan)] ^= 1
            return np.eye(2, dtype=np.float32)[predicted]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    return Executor


def test_the_accuracy_gate_leaves_out_low_precision_plans_that_lose_accuracy(models, monkeypatch):
    import tinybert_infer.plan.planner as plan_module
    from tinybert_infer.plan.planner import AccuracyGate, gate_plans

    labels = np.array([0, 1] * 100)
    wrong = {"onnxruntime": 0, "openvino-int8": 1, "onnxruntime-int8-dynamic": 2}  # wrong labels out of 200 per variant

    monkeypatch.setattr(plan_module, "open_plan", _labelling_executor(labels, lambda plan: wrong[plan.variant]))
    plans = [Plan("openvino-int8", "m.xml", "length", 4, "per_length", DEFAULT_BUCKETS),
             Plan("onnxruntime-int8-dynamic", "m.onnx", "length", 4, "dynamic")]
    kept, info = gate_plans(plans, AccuracyGate({}, labels, max_drop=0.005), "m.onnx")
    assert kept == plans[:1]  # -0.5 points kept, -1.0 point left out
    assert info["fp32_accuracy"] == 1.0 and info["accuracy"][plans[1].label()] == 0.99


def test_a_cached_choice_never_reads_the_gate_sentences(models, tmp_path, monkeypatch):
    import tinybert_infer.plan.planner as plan_module
    from tinybert_infer.plan.planner import AccuracyGate

    dyn = tmp_path / "TinyBERT_sim_dyn.onnx"
    shutil.copy(models["dynamic"], dyn)
    plans = [Plan("onnxruntime", str(dyn), "length", 4, "dynamic", pad_multiple=8, threads=1)]
    monkeypatch.setattr(plan_module, "time_plans", lambda candidates, feats, **kw: (
        {p.label(): [100.0] for p in candidates}, {p.label(): 0.1 for p in candidates}))
    loads = []
    labels = np.zeros(len(models["feats"]["input_ids"]), dtype=np.int64)

    def gate(tag):
        return AccuracyGate(max_drop=0.005, source="dev.tsv",
                            load=lambda: loads.append(tag) or (models["feats"], labels))

    first = make_plan(dynamic_model=dyn, precision="int8", batch_size=4, threads=1, candidates=plans,
                      data=models["feats"], gate=gate("measured"), log=lambda s: None)
    again = make_plan(dynamic_model=dyn, precision="int8", batch_size=4, threads=1, candidates=plans,
                      data=models["feats"], gate=gate("cached"), log=lambda s: None)
    assert first.selection["cached"] is False and again.selection["cached"] is True
    assert loads == ["measured"]  # the cached answer did not tokenise the dev set
    assert first.selection["accuracy_gate"]["source"] == "dev.tsv"


def test_the_dev_gate_pickles_for_child_processes_and_reads_its_sentences_once(models, tiny_checkpoint):
    import pickle

    from tinybert_infer.models.checkpoint import VOCAB_FILE
    from tinybert_infer.plan.planner import dev_gate

    gate = pickle.loads(pickle.dumps(dev_gate(models["tsv"], tiny_checkpoint / VOCAB_FILE)))
    feats, labels = gate.sentences()
    assert feats["input_ids"].shape[0] == len(labels) == len(models["feats"]["input_ids"])
    assert gate.sentences()[0] is feats


def test_runtime_versions_key_is_the_runtimes_own_versions_without_importing_them():
    import subprocess
    import sys

    import onnxruntime
    import openvino

    from tinybert_infer.plan.select import runtime_versions_key

    assert runtime_versions_key() == f"ort{onnxruntime.__version__}-ov{openvino.__version__.split('-')[0]}"
    code = ("import sys; from tinybert_infer.plan.select import runtime_versions_key; runtime_versions_key(); "
            "assert 'openvino' not in sys.modules and 'onnxruntime' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_pick_with_a_lazy_gate_equals_pick_over_the_admitted_plans():
    """pick asks the gate only for the plans its answer depends on, and answers as if it had gated all first."""
    rng = np.random.default_rng(0)
    plans = [Plan("onnxruntime", f"m{i}.onnx", "length", 4, "dynamic") for i in range(6)]
    for _ in range(300):
        medians = {p.label(): float(rng.uniform(50, 150)) for p in plans}
        setup = {p.label(): float(rng.uniform(0, 3)) for p in plans}
        admitted = {p.label() for p in plans if rng.random() < 0.6}
        for job_size in (None, 872, 100_000):
            asked = []
            lazy = pick(plans, medians, 0.1, setup, job_size,
                        admit=lambda p: asked.append(p.label()) or p.label() in admitted)
            eager = [p for p in plans if p.label() in admitted]
            assert lazy == (pick(eager, medians, 0.1, setup, job_size) if eager else None)
            assert len(asked) <= len(plans) * 2


def test_the_gate_scores_only_the_plans_the_choice_needs_and_caches_their_verdicts(models, tmp_path, monkeypatch):
    import tinybert_infer.plan.planner as plan_module
    from tinybert_infer.plan.planner import AccuracyGate

    dyn = tmp_path / "TinyBERT_sim_dyn.onnx"
    shutil.copy(models["dynamic"], dyn)
    labels = np.array([0, 1] * 100)
    plans = [Plan("onnxruntime-int8-dynamic", str(dyn), "length", 4, "dynamic", pad_multiple=m, threads=1)
             for m in (2, 4, 8, 16)]
    # samples/s: the preferred plan (pad 2) slow, pad 4 fastest but 1 point off, pad 8 next, pad 16 slowest
    rates = dict(zip([p.label() for p in plans], (100.0, 200.0, 180.0, 90.0)))
    wrong = dict(zip([p.label() for p in plans], (0, 2, 1, 0)))
    scored = []

    monkeypatch.setattr(plan_module, "open_plan", _labelling_executor(
        labels, lambda plan: scored.append(plan.label()) or wrong.get(plan.label(), 0)))
    monkeypatch.setattr(plan_module, "time_plans", lambda candidates, feats, **kw: (
        {p.label(): [rates[p.label()]] for p in candidates}, {p.label(): 0.5 for p in candidates}))
    gate = AccuracyGate({}, labels, max_drop=0.005, source="dev.tsv")
    logs = []
    first = make_plan(dynamic_model=dyn, precision="int8", batch_size=4, threads=1, candidates=plans,
                      data=models["feats"], gate=gate, log=logs.append)
    assert first.plan == plans[2]  # the fastest plan within the gate
    reference = [s for s in scored if s.startswith("onnxruntime length")]
    assert len(reference) == 1 and sorted(set(scored) - set(reference)) == sorted(p.label() for p in plans[:3])
    assert plans[3].label() not in scored  # slower than the choice and not preferred: never scored
    assert any("outside the gate, left out" in line for line in logs)
    gate_info = first.selection["accuracy_gate"]
    assert set(gate_info["accuracy"]) == {p.label() for p in plans[:3]} and gate_info["fp32_accuracy"] == 1.0

    # A later job size whose choice needs the verdict on pad 16 (its setup is lower) scores it once, then caches it.
    cache_file = dyn.parent / "tinybert_backend_choice.json"
    cache = json.loads(cache_file.read_text())
    (entry,) = cache.values()
    entry["setup_s"] = dict(entry["setup_s"], **{plans[3].label(): 0.0}, **{p.label(): 20.0 for p in plans[:3]})
    cache_file.write_text(json.dumps(cache))
    scored.clear()
    small = make_plan(dynamic_model=dyn, precision="int8", batch_size=4, threads=1, candidates=plans,
                      data=models["feats"], gate=gate, job_size=100, log=logs.append)
    assert small.selection["cached"] is True and small.plan == plans[3] and scored == [plans[3].label()]
    scored.clear()
    again = make_plan(dynamic_model=dyn, precision="int8", batch_size=4, threads=1, candidates=plans,
                      data=models["feats"], gate=gate, job_size=100, log=logs.append)
    assert again.plan == plans[3] and scored == []


def test_no_plan_within_the_gate_is_one_clear_error(models, tmp_path, monkeypatch):
    import tinybert_infer.plan.planner as plan_module
    from tinybert_infer.plan.planner import AccuracyGate

    dyn = tmp_path / "TinyBERT_sim_dyn.onnx"
    shutil.copy(models["dynamic"], dyn)
    labels = np.array([0, 1] * 100)
    plans = [Plan("onnxruntime-int8-dynamic", str(dyn), "length", 4, "dynamic", pad_multiple=m, threads=1)
             for m in (4, 8)]
    monkeypatch.setattr(plan_module, "open_plan", _labelling_executor(
        labels, lambda plan: 0 if plan.variant == "onnxruntime" else 3))  # every candidate 1.5 points off
    monkeypatch.setattr(plan_module, "time_plans", lambda candidates, feats, **kw: (
        {p.label(): [100.0] for p in candidates}, {p.label(): 0.1 for p in candidates}))
    with pytest.raises(UsageError, match=r"no int8 plan is within 0\.5 points of fp32 accuracy on dev\.tsv: use "
                                         r"--precision fp32"):
        make_plan(dynamic_model=dyn, precision="int8", batch_size=4, threads=1, candidates=plans,
                  data=models["feats"], gate=AccuracyGate({}, labels, max_drop=0.005, source="dev.tsv"),
                  log=lambda s: None)
    assert not (tmp_path / SELECTION_CACHE_NAME).exists()  # nothing cached for a failed choice
