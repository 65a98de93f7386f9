"""bench/verdicts.py: the table's conclusions and every section's targets follow from the run's figures."""

import pytest

from bench_helpers import synthetic_report
from tinybert_infer.bench.targets import PUBLISHED, DynamicTargets
from tinybert_infer.bench.verdicts import dynamic_problems, dynamic_target, real_job_targets, summarise


def test_recommendation_is_the_fastest_within_tolerance_and_default_is_the_fastest_exact():
    rates = {("torch", 8): 100.0, ("onnxruntime", 8): 150.0, ("openvino-fp32", 8): 200.0,
             ("onnxruntime-int8-dynamic", 8): 900.0, ("openvino-bf16", 8): 600.0}
    accuracy = {"torch": 90.0, "onnxruntime": 90.0, "openvino-fp32": 90.0, "onnxruntime-int8-dynamic": 89.5,
                "openvino-bf16": 89.8}
    s = summarise(synthetic_report(rates, accuracy), {"fp32": 250.0, "int8": 2000.0, "bf16": 1000.0})
    assert s["default_fp32"][8] == "openvino-fp32"
    assert s["recommended"] == "openvino-bf16"  # int8 is faster but 0.5 points off
    target = {prefix: next(x for x in s["targets"] if x["target"].startswith(prefix))
              for prefix in ("default fp32 >=", "default fp32 reaches", "best low precision")}
    assert target["default fp32 >="]["met"] and target["default fp32 reaches"]["ratio"] == pytest.approx(0.8)
    lowp = target["best low precision"]
    assert lowp["ratio"] == pytest.approx(4.5) and lowp["met"]  # 89.5 is within the target's 0.5 points


def _dyn_row(batch, ratio, parity=True):
    return {"backend": "onnxruntime", "batch": batch, "ratio": ratio, "parity": parity, "labels_equal": parity,
            "max_logit_diff": 0.0 if parity else 1.0}


def test_dynamic_target_judges_the_worst_gated_ratio_and_parity_everywhere():
    rows = [_dyn_row(1, 0.5), _dyn_row(8, 2.5), _dyn_row(32, 3.0)]
    target = dynamic_target(rows)
    assert target["met"] and target["ratio"] == 2.5  # BS 1 is below the gate: not judged
    assert target["per_bs"] == {"onnxruntime bs8": 2.5, "onnxruntime bs32": 3.0}
    assert not dynamic_target(rows + [_dyn_row(1, 5.0, parity=False)])["met"]  # a parity failure anywhere fails it
    assert not dynamic_target(rows, DynamicTargets(ratio=2.6))["met"]  # the target is a parameter
    assert dynamic_target([_dyn_row(1, 9.0)])["ratio"] is None
    problems = dynamic_problems([_dyn_row(8, 1.5), _dyn_row(1, 0.1, parity=False)])
    assert len(problems) == 2 and "differ" in problems[0] and "1.50x, below the 2x target" in problems[1]


def test_real_job_targets_use_the_published_figure():
    def row(model, kind, sps, fraction=None):
        return {"model": model, "precision": "fp32", "kind": kind, "samples_per_s": sps,
                "fraction_of_real_job_limit": fraction}

    published = PUBLISHED["fps"]["T4"][64]
    rows = [row("checkpoint", "static-64", 100.0), row("checkpoint", "recommended", 250.0, 0.5),
            row("4L-312D", "static-64", 1000.0), row("4L-312D", "recommended", published / 2)]
    targets = {t["target"]: t for t in real_job_targets(rows)}
    assert targets["checkpoint fp32: recommended >= 2x static-64"] == {
        "target": "checkpoint fp32: recommended >= 2x static-64", "ratio": 2.5, "met": True}
    assert not targets["checkpoint fp32: >= 0.6 of the real-job limit"]["met"]
    last = targets[f"4L-312D recommended >= {published} samples/s (published T4, BS 64)"]
    assert last["ratio"] == pytest.approx(0.5) and not last["met"]


def test_real_job_targets_compare_the_fastest_plan_with_the_fastest_static_one_of_the_same_run():
    def row(precision, kind, sps):
        return {"model": "checkpoint", "precision": precision, "kind": kind, "samples_per_s": sps,
                "fraction_of_real_job_limit": None}

    rows = [row("fp32", "static-64", 80.0), row("fp32", "recommended", 150.0),
            row("int8", "static-64", 100.0), row("int8", "recommended", 210.0)]
    targets = {t["target"].split(" (")[0]: t for t in real_job_targets(rows)}
    vs_best = targets["checkpoint: fastest recommended >= 2x the fastest static-64"]
    assert vs_best["ratio"] == pytest.approx(2.1) and vs_best["met"]   # 210 against the best static, 100
    absolute = targets["checkpoint: fastest recommended >= 1654 samples/s"]
    assert absolute["ratio"] == pytest.approx(210 / 1654) and not absolute["met"]
