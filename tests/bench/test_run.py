"""`benchmark` (bench/run.py): the quick mode's files are well formed, its dynamic-length section included.
The table's conclusions: test_verdicts.py; its Markdown: test_report.py."""

import json
import sys

import pytest

from conftest import ROOT, SENTENCES, WORDS, clean_environ, early_job, early_result, write_tsv
from tinybert_infer.bench.prepare import perturb_layer_norms
from tinybert_infer.bench.report import render_markdown
from tinybert_infer.export.optimize import VARIANTS
from tinybert_infer.models.synthetic import write_random_checkpoint


# Each runtime once (and one quantised artefact): every section's code runs, at half the cells of all VARIANTS.
QUICK_BACKENDS = ("torch", "onnxruntime", "onnxruntime-fused", "openvino-fp32", "openvino-int8")


@early_job("quick_run")
def quick_benchmark(root):
    """bash test/benchmark.sh --quick on tiny models (the real shapes are for the full run, not CI)."""
    tp = perturb_layer_norms(write_random_checkpoint(root / "tp", words=WORDS, seed=5))
    acc = write_random_checkpoint(root / "acc", words=WORDS, seed=6)
    write_tsv(root / "glue" / "dev.tsv")
    return (["bash", ROOT / "test" / "benchmark.sh", "--quick", "--out", "out", "--throughput_model", tp,
             "--model_dir", acc, "--data_dir", root / "glue", "--batch_sizes", "1,4", "--accuracy_bs", "4",
             "--threads", "1", "--backends", ",".join(QUICK_BACKENDS)], root, dict(clean_environ(), PYTHON=sys.executable))


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
    assert names == list(QUICK_BACKENDS) and set(names) <= set(VARIANTS)
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
    assert md == render_markdown(report)  # benchmark.md follows from benchmark.json alone
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
