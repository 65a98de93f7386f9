"""bench/report.py: benchmark.md from the report, every section and the published columns."""

import json

from bench_helpers import synthetic_report
from tinybert_infer.bench.report import dynamic_section_lines, real_job_section_lines, render_markdown, row, table
from tinybert_infer.bench.run import BATCH_SIZES, jsonable
from tinybert_infer.bench.targets import PUBLISHED
from tinybert_infer.bench.verdicts import summarise


def test_markdown_has_the_published_columns_for_every_batch_size():
    rates = {(n, bs): 10.0 * bs for n in ("torch", "onnxruntime") for bs in BATCH_SIZES}
    report = synthetic_report(rates, {"torch": 91.0, "onnxruntime": 91.0})
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
    report["rows"].append({"backend": "onnxruntime", "precision": "fp32", "batch_size": 64, "error": "RuntimeError: x"})
    md = render_markdown(report)
    for bs in BATCH_SIZES:
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {bs} | "))
        assert f"{PUBLISHED['fps']['310P'][bs]:.2f}" in line and f"{PUBLISHED['fps']['T4'][bs]:.2f}" in line
    assert "310P (published, not measured here)" in md and "TinyBERT-4L-312D" in md
    assert "\n| onnxruntime | fp32 | 64 | failed: RuntimeError: x | | | | | | |\n" in md  # a failed cell keeps its columns
    assert render_markdown(json.loads(json.dumps(jsonable(report)))) == md  # from benchmark.json read back: the same


def test_table_rows_and_separator():
    assert table(["a", "b"], [[1, ""], ["x", 2.5]]) == ["| a | b |", "|---|---|", "| 1 | |", "| x | 2.5 |"]
    assert row([]) == "|"


def test_sections_render_their_rows_and_skips():
    dyn = {"rows": [{"backend": "openvino", "batch": 8, "static_sps": 10.0, "dynamic_sps": 25.0, "ratio": 2.5,
                     "static_tokens": 512, "padded_tokens": 100, "real_tokens": 90, "token_reduction": 5.12,
                     "streams": {"dynamic": 2, "static_best": 1}, "labels_equal": True, "max_logit_diff": 1e-6,
                     "accuracy_static": 0.9, "accuracy_dynamic": 0.9}],
           "repeats": 2, "tsv": "dev.tsv", "target": {"target": "T", "ratio": 2.5, "met": True}}
    text = "\n".join(dynamic_section_lines(dyn))
    assert "| openvino | 8 | 10.0 | 25.0 | 2.50x | 512 / 100 / 90 | 5.12x | 1 / 2 | yes | 1.00e-06 | 0.9000 / 0.9000 |" in text
    assert text.endswith("Target: T: worst ratio 2.50x; met in this run.")
    job = {"rows": [{"model": "checkpoint", "precision": "bf16", "kind": "recommended", "plan": "p",
                     "samples_per_s": 500.0, "samples_per_s_first_run": 120.0,
                     "real_job_limit": None, "fraction_of_real_job_limit": None,
                     "accuracy": None, "labels_differ_from_pytorch": 3, "compile_s": None}],
           "batch": 32, "repeats": 1, "tsv": "dev.tsv", "gemm_gflops": {"fp32": 90.0}, "targets": []}
    text = "\n".join(real_job_section_lines(job))
    assert "| checkpoint | bf16 | recommended: p | 500.0 | 120.0 | n/a | n/a | n/a | 3 | - |" in text
    quoted = " / ".join(f"{PUBLISHED['fps'][card][32]:.2f}" for card in ("310", "310P", "T4"))
    assert f"Published 310 / 310P / T4 (TinyBERT-4L-312D, BS 32): {quoted} samples/s" in text
    assert "fp32 90.0, bf16 n/a, int8 n/a GFLOP/s" in text
    for lines in (dynamic_section_lines({"skipped": "why"}), real_job_section_lines({"skipped": "why"})):
        assert lines[-1] == "Skipped: why."
    assert dynamic_section_lines(None) == real_job_section_lines(None) == []
