"""`benchmark`: the quick mode's files are well formed; the table's conclusions follow from its figures."""

import json
import sys

import pytest

from conftest import ROOT, SENTENCES, WORDS, clean_environ, early_job, early_result, write_tsv
from tinybert_infer.bench.run import BATCH_SIZES, PUBLISHED, perturb_layer_norms, render_markdown, summarise
from tinybert_infer.export.optimize import VARIANTS
from tinybert_infer.models.synthetic import write_random_checkpoint


@early_job("quick_run")
def quick_benchmark(root):
    """bash test/benchmark.sh --quick on tiny models (the real shapes are for the full run, not CI)."""
    tp = perturb_layer_norms(write_random_checkpoint(root / "tp", words=WORDS, seed=5))
    acc = write_random_checkpoint(root / "acc", words=WORDS, seed=6)
    write_tsv(root / "glue" / "dev.tsv")
    return (["bash", ROOT / "test" / "benchmark.sh", "--quick", "--out", "out", "--throughput_model", tp,
             "--model_dir", acc, "--data_dir", root / "glue", "--batch_sizes", "1,4", "--accuracy_bs", "4",
             "--threads", "1"], root, dict(clean_environ(), PYTHON=sys.executable))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick benchmark's output folder and run (started early: conftest.EARLY_JOBS)."""
    proc, root = early_result("quick_run", tmp_path_factory)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "out", proc


def test_quick_benchmark_writes_well_formed_files(quick_run):
    out, proc = quick_run
    report = json.loads((out / "benchmark.json").read_text())
    names = list(report["backends"])
    assert set(names) <= set(VARIANTS) and {"torch", "onnxruntime", "onnxruntime-fused", "openvino-fp32"} <= set(names)
    assert len(report["rows"]) == len(names) * 2
    for row in report["rows"]:
        assert "error" not in row, row
        lat = row["latency_ms"]
        assert row["samples_per_s"] > 0 and 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
        assert row["rss_mb"] > 0 and row["iterations"] >= 1 and row["fraction_of_fp32_limit"] > 0
        assert row["describe"]["threads"] == 1
    assert report["machine"]["threads"] == 1 and report["machine"]["versions"]["onnxruntime"]
    assert report["roofline"]["gflops"]["fp32"] > 0 and report["throughput_model"]["limit_samples_per_s"]["fp32"] > 0
    accuracy = report["accuracy"]["per_backend"]
    assert set(accuracy) == set(names) and all(0 <= a["accuracy"] <= 100 for a in accuracy.values())
    assert accuracy["onnxruntime"]["labels_differing_from_torch"] == 0
    assert report["recommended"] in names and report["default_fp32"]["1"] in ("onnxruntime", "onnxruntime-fused", "openvino-fp32")
    assert [t["met"] in (True, False) for t in report["targets"]] == [True] * 4
    md = (out / "benchmark.md").read_text()
    assert "published, not measured here" in md and "| accuracy (%) |" in md and "★" in md
    assert all(f"\n| {bs} | " in md for bs in (1, 4))
    _assert_dynamic_length_section(report, md)
    png = (out / "benchmark.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert "benchmark.md" in proc.stdout and not any(p.name.startswith(".") for p in out.iterdir())


def _assert_dynamic_length_section(report: dict, md: str) -> None:
    """The dynamic-length rows: every backend x BS, static-64 against length-aware on the same 13 sentences,
    token counts that follow from the batch size, the same labels and accuracy through postprocessing."""
    import math

    section = report["dynamic_length"]
    assert "skipped" not in section, section
    rows = section["rows"]
    assert sorted({r["batch"] for r in rows}) == [1, 4] and len(rows) == 2 * len({r["backend"] for r in rows})
    for r in rows:
        assert r["samples"] == len(SENTENCES)
        assert r["static_tokens"] == math.ceil(len(SENTENCES) / r["batch"]) * r["batch"] * 64
        assert 0 < r["real_tokens"] <= r["padded_tokens"] < r["static_tokens"]
        assert abs(r["token_reduction"] - r["static_tokens"] / r["padded_tokens"]) < 1e-6
        assert r["labels_equal"] and r["parity"] and r["max_logit_diff"] <= 1e-4
        assert r["accuracy_static"] is not None and r["accuracy_static"] == r["accuracy_dynamic"]
        assert r["static_sps"] > 0 and r["dynamic_sps"] > 0
        assert abs(r["ratio"] - r["static_s"] / r["dynamic_s"]) < 1e-9
    assert section["target"]["ratio"] is None  # no BS >= 8 in the quick run: not judged
    assert "## Dynamic length (length-aware batching) vs static-64, end to end" in md
    assert all(f"| {r['backend']} | {r['batch']} | " in md for r in rows)


def _report(rates, accuracy):
    """A report with given samples/s per (backend, bs) and accuracy per backend, in run_benchmark's shape."""
    rows = [{"backend": n, "precision": VARIANTS[n].precision, "batch_size": bs, "samples_per_s": v, "rss_mb": 500.0,
             "latency_ms": {"mean": 1, "p50": 1, "p99": 1}, "iterations": 9}
            for (n, bs), v in rates.items()]
    return {"rows": rows, "batch_sizes": sorted({bs for _, bs in rates}), "backends": {n: {} for n, _ in rates},
            "accuracy": {"per_backend": {n: {"accuracy": a} for n, a in accuracy.items()}}}


def test_recommendation_is_the_fastest_within_tolerance_and_default_is_the_fastest_exact():
    rates = {("torch", 8): 100.0, ("onnxruntime", 8): 150.0, ("openvino-fp32", 8): 200.0,
             ("onnxruntime-int8-dynamic", 8): 900.0, ("openvino-bf16", 8): 600.0}
    accuracy = {"torch": 90.0, "onnxruntime": 90.0, "openvino-fp32": 90.0, "onnxruntime-int8-dynamic": 89.5,
                "openvino-bf16": 89.8}
    s = summarise(_report(rates, accuracy), {"fp32": 250.0, "int8": 2000.0, "bf16": 1000.0})
    assert s["default_fp32"][8] == "openvino-fp32"
    assert s["recommended"] == "openvino-bf16"  # int8 is faster but 0.5 points off
    target = {prefix: next(x for x in s["targets"] if x["target"].startswith(prefix))
              for prefix in ("default fp32 >=", "default fp32 reaches", "best low precision")}
    assert target["default fp32 >="]["met"] and target["default fp32 reaches"]["ratio"] == pytest.approx(0.8)
    lowp = target["best low precision"]
    assert lowp["ratio"] == pytest.approx(4.5) and lowp["met"]  # 89.5 is within the target's 0.5 points


def test_markdown_has_the_published_columns_for_every_batch_size():
    rates = {(n, bs): 10.0 * bs for n in ("torch", "onnxruntime") for bs in BATCH_SIZES}
    report = _report(rates, {"torch": 91.0, "onnxruntime": 91.0})
    report.update(summarise(report, {"fp32": 1000.0, "int8": None, "bf16": None}))
    report.update(title="t", quick=False, machine={"cpu": "x", "threads": 2, "versions": {"torch": "2"}},
                  load_average_start=[0.1], load_average_end=[0.2], published=PUBLISHED, elapsed_s=1.0,
                  roofline={"gemm_size": 8, "threads": 2, "gflops": {"fp32": 1.0, "int8": None, "bf16": None}},
                  throughput_model={"limit_samples_per_s": {"fp32": 1000.0, "int8": None, "bf16": None}, "seq_len": 64,
                                    "gflop_per_sample": 0.6, "random_weights": True, "checkpoint": "c",
                                    "shape": {"num_hidden_layers": 4, "hidden_size": 312, "num_attention_heads": 12,
                                              "intermediate_size": 1200}})
    report["accuracy"].update(checkpoint="c", tsv="d", samples="all", batch_size=32, calibration_tsv="t",
                              shape={"layers": 6, "hidden": 384})
    md = render_markdown(report)
    for bs in BATCH_SIZES:
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {bs} | "))
        assert f"{PUBLISHED['fps']['310P'][bs]:.2f}" in line and f"{PUBLISHED['fps']['T4'][bs]:.2f}" in line
    assert "310P (published, not measured here)" in md and "TinyBERT-4L-312D" in md
