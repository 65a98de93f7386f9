"""CPU artefacts (fusions, INT8, OpenVINO precisions), `--backend auto` selection, and the GEMM roofline."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED, WORDS, run_cli, run_cli_in_process
from tinybert_infer.bench.prepare import perturb_layer_norms
from tinybert_infer.models.checkpoint import load_model
from tinybert_infer.errors import UsageError
from tinybert_infer.export.onnx import export_checkpoint, validation_inputs
from tinybert_infer.layout import INPUT_NAMES, SELECTION_CACHE_NAME
from tinybert_infer.export.optimize import (FP32_CANDIDATES, artefact_path, build_artefacts, calibration_batches,
                                            fused_counts, make_variant_backend)
from tinybert_infer.plan.select import PREFERRED, SWITCH_MARGIN, choose_backend
from tinybert_infer.models.synthetic import write_random_checkpoint
from tinybert_infer.plan.timing import TimingPolicy

BS = 4
FAST = TimingPolicy(warmup_s=0.0, warmup_runs=1, min_s=0.0, min_runs=2, max_s=0.5)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny checkpoint whose LayerNorms are not identity (as in trained ones), exported at BS 4."""
    root = tmp_path_factory.mktemp("opt")
    ckpt = perturb_layer_norms(write_random_checkpoint(root / "ckpt", words=WORDS, seed=3, num_hidden_layers=2))
    export_checkpoint(ckpt, BS, root, validate_count=8)
    checkpoint, torch_model = load_model(ckpt)
    feats, _ = validation_inputs(checkpoint, None, 2 * BS)
    with torch.inference_mode():
        expected = torch_model(*(torch.from_numpy(feats[n]) for n in INPUT_NAMES)).numpy()
    return root, ckpt, root / f"TinyBERT_sim_bs{BS}.onnx", feats, expected


def run_all(backend, feats):
    out = [backend.run({n: feats[n][s:s + BS] for n in INPUT_NAMES}) for s in range(0, len(feats["input_ids"]), BS)]
    return np.concatenate(out)


def test_bert_fusions_happen_on_our_export_and_keep_the_numbers(model):
    root, ckpt, sim, feats, expected = model
    arts = build_artefacts(sim, ["onnxruntime-fused"], batch_size=BS, threads=1)
    fused = arts["onnxruntime-fused"].notes["fused"]
    # The last layer computes only the [CLS] row (modeling.Encoder), so its attention stays unfused; the
    # feed-forward and LayerNorms of every layer still fuse.
    assert fused.get("Attention") == 1 and fused.get("SkipLayerNormalization", 0) >= 3 and fused.get("BiasGelu") == 2
    assert fused == fused_counts(arts["onnxruntime-fused"].path)
    backend = make_variant_backend("onnxruntime-fused", arts["onnxruntime-fused"].path, threads=1)
    assert np.max(np.abs(run_all(backend, feats) - expected)) < 1e-4
    assert sim.is_file() and arts["onnxruntime-fused"].path.name == f"TinyBERT_sim_bs{BS}.onnxruntime-fused.onnx"


def test_full_last_layer_export_fuses_attention_in_every_layer(model, tmp_path):
    root, ckpt, sim, feats, expected = model
    export_checkpoint(ckpt, BS, tmp_path, validate_count=8, cls_only_last_layer=False)
    arts = build_artefacts(tmp_path / sim.name, ["onnxruntime-fused"], batch_size=BS, threads=1)
    assert arts["onnxruntime-fused"].notes["fused"].get("Attention") == 2
    backend = make_variant_backend("onnxruntime-fused", arts["onnxruntime-fused"].path, threads=1)
    assert np.max(np.abs(run_all(backend, feats) - expected)) < 1e-4


def cpu_has_bf16() -> bool:
    """Decided from the CPU itself (OpenVINO's device capabilities), not from what a backend reports."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_openvino_fp32_is_pinned_and_exact_and_bf16_is_bf16(model):
    """bf16 must really run in bf16 where the CPU has it (its logits then differ from f32, yet give the same
    labels on every sample whose fp32 margin is clear), and run as exact f32 where it has not."""
    root, ckpt, sim, feats, expected = model
    fp32 = make_variant_backend("openvino-fp32", sim, threads=1)
    assert fp32.describe()["inference_precision_hint"] == "f32" and fp32.describe()["threads"] == 1
    assert np.max(np.abs(run_all(fp32, feats) - expected)) < 1e-4
    bf16 = make_variant_backend("openvino-bf16", sim, threads=1)
    got = run_all(bf16, feats)
    diff = np.max(np.abs(got - expected))
    if cpu_has_bf16():
        assert bf16.describe()["inference_precision_hint"] == "bf16"
        assert diff > 1e-6, "bf16 gave f32's exact logits: it did not run in bf16"
        assert diff < 0.05 * np.max(np.abs(expected)) + 0.05
        clear = np.abs(expected[:, 0] - expected[:, 1]) > 2 * diff
        assert (got.argmax(1) == expected.argmax(1))[clear].all()
    else:
        assert bf16.describe()["inference_precision_hint"] == "f32" and diff < 1e-4


def test_int8_artefacts_are_quantised_and_run(model):
    import onnx

    root, ckpt, sim, feats, expected = model
    calib = lambda: calibration_batches(feats, BS)  # noqa: E731
    arts = build_artefacts(sim, ["onnxruntime-int8-dynamic", "openvino-int8", "openvino-int8-bf16"], batch_size=BS, threads=1,
                           calibration=calib, time_fn=lambda name, path: 1.0, rebuild=True)
    dyn = arts["onnxruntime-int8-dynamic"]
    ops = {n.op_type for n in onnx.load(str(dyn.path), load_external_data=False).graph.node}
    assert ops & {"DynamicQuantizeMatMul", "MatMulInteger", "QAttention", "DynamicQuantizeLinear"}
    assert dyn.notes["quantized_from"] in ("fused", "plain")
    ov8 = arts["openvino-int8"]
    assert ov8.notes["fake_quantize_nodes"] > 0 and ov8.path.suffix == ".xml" and ov8.path.with_suffix(".bin").is_file()
    assert arts["openvino-int8-bf16"].path == ov8.path  # one NNCF IR; only the hint for its other ops differs
    hints = {}
    scale = np.max(np.abs(expected))
    from tinybert_infer.machine import cpu_flags

    # Without VNNI (an AVX2-only CPU), u8 x s8 products are summed in pairs into saturating int16 (vpmaddubsw):
    # OpenVINO's int8 drifts further there (0.33 of a 0.80 logit scale on this tiny random model, AMD Zen 3). The
    # planner's accuracy gate is what keeps such a plan out of a run; here it must still be close.
    bound = 0.1 if cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"} else 0.5
    for name, art in arts.items():
        backend = make_variant_backend(name, art.path, threads=1)
        hints[name] = backend.describe().get("precision")
        logits = run_all(backend, feats)
        assert logits.shape == expected.shape and np.all(np.isfinite(logits))
        diff = np.abs(logits - expected)
        # int8, not exact, and close: within a tenth of the logit scale (VNNI), labels kept where fp32's margin is clear
        assert 0 < np.max(diff) < bound * scale, (name, np.max(diff), scale)
        clear = np.abs(expected[:, 0] - expected[:, 1]) > 2 * np.max(diff)
        assert (logits.argmax(1) == expected.argmax(1))[clear].all(), name
    assert hints["openvino-int8"] == "fp32" and hints["openvino-int8-bf16"] == "bf16"


def test_auto_picks_a_measured_exact_fp32_artefact_and_caches_it(model, tmp_path):
    root, ckpt, sim, feats, expected = model
    local = tmp_path / sim.name
    shutil.copy(sim, local)
    chosen = choose_backend(local, batch_size=BS, threads=1, policy=FAST, log=lambda s: None)
    info = chosen.describe()
    assert chosen.variant in FP32_CANDIDATES and info["selected_by"] == "auto"
    rates = info["selection"]["samples_per_s"]
    assert set(rates) == set(FP32_CANDIDATES) and info["selection"]["cached"] is False
    # the measured fastest, unless the preferred one is within the switching margin of it
    preferred = PREFERRED["fp32"]
    assert chosen.variant == max(rates, key=rates.get) or (
        chosen.variant == preferred and max(rates.values()) <= rates[preferred] * (1 + SWITCH_MARGIN))
    assert np.max(np.abs(run_all(chosen, feats) - expected)) < 1e-4
    cache = json.loads((tmp_path / SELECTION_CACHE_NAME).read_text())
    (key, entry), = cache.items()
    assert f"bs{BS}" in key and "threads1" in key and entry["variant"] == chosen.variant
    again = choose_backend(local, batch_size=BS, threads=1, policy=FAST, log=lambda s: None)
    assert again.variant == chosen.variant and again.describe()["selection"]["cached"] is True
    # Another thread count is another machine setting: measured afresh, not taken from the cache.
    other = choose_backend(local, batch_size=BS, threads=2, policy=FAST, log=lambda s: None)
    assert other.describe()["selection"]["cached"] is False and len(json.loads((tmp_path / SELECTION_CACHE_NAME)
                                                                              .read_text())) == 2


@pytest.mark.parametrize("rates, want", [
    ({"openvino-fp32": 100.0, "onnxruntime": 300.0, "onnxruntime-fused": 150.0}, "onnxruntime"),  # clearly faster: switch
    ({"openvino-fp32": 100.0, "onnxruntime": 105.0, "onnxruntime-fused": 90.0}, "openvino-fp32"),     # within the margin: keep
    ({"openvino-fp32": 100.0, "onnxruntime": 120.0, "onnxruntime-fused": 200.0}, "onnxruntime-fused"),
])
def test_auto_picks_the_fastest_measured_candidate(model, tmp_path, monkeypatch, rates, want):
    """With the measurement made deterministic, auto must pick by it: the fastest, or the preferred candidate
    when no other beats it by more than the margin."""
    import tinybert_infer.plan.select as select

    root, ckpt, sim, feats, expected = model
    local = tmp_path / sim.name
    shutil.copy(sim, local)
    monkeypatch.setattr(select, "measure_backend",
                        lambda backend, batch, policy, **kw: {"samples_per_s": rates[backend.variant]})
    chosen = choose_backend(local, batch_size=BS, threads=1, policy=FAST, log=lambda s: None)
    assert chosen.variant == want
    assert np.max(np.abs(run_all(chosen, feats) - expected)) < 1e-4


def test_auto_measures_again_when_the_model_changes(model, tmp_path, monkeypatch):
    """The cache is keyed by the model's bytes: a re-exported graph at the same path is measured afresh."""
    import onnx

    import tinybert_infer.plan.select as select

    root, ckpt, sim, feats, expected = model
    local = tmp_path / sim.name
    shutil.copy(sim, local)
    monkeypatch.setattr(select, "measure_backend", lambda backend, batch, policy, **kw: {"samples_per_s": 1.0})
    assert choose_backend(local, batch_size=BS, threads=1, policy=FAST, log=lambda s: None).describe()[
        "selection"]["cached"] is False
    assert choose_backend(local, batch_size=BS, threads=1, policy=FAST, log=lambda s: None).describe()[
        "selection"]["cached"] is True
    graph = onnx.load(str(local))
    graph.metadata_props.add(key="re-exported", value="yes")
    onnx.save(graph, str(local))
    assert choose_backend(local, batch_size=BS, threads=1, policy=FAST, log=lambda s: None).describe()[
        "selection"]["cached"] is False


def test_infer_cli_defaults_to_auto_and_low_precision_is_a_flag(model, tmp_path, short_auto_timing):
    root, ckpt, sim, feats, expected = model
    shutil.copy(sim, tmp_path / sim.name)
    proc = run_cli_in_process("infer", "--model", sim.name, "--batchsize", BS, "--loop", 2, "--threads", 1,
                              cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"\[auto\] chose (onnxruntime|onnxruntime-fused|openvino-fp32) for fp32", proc.stderr)
    proc = run_cli_in_process("infer", "--model", sim.name, "--batchsize", BS, "--loop", 2, "--threads", 1,
                              "--precision", "bf16", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "chose openvino-bf16" in proc.stderr
    proc = run_cli_in_process("infer", "--model", sim.name, "--batchsize", BS, "--backend", "onnxruntime",
                              "--precision", "int8", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def test_variant_names_are_checked():
    with pytest.raises(UsageError):
        build_artefacts(__file__, ["onnxruntime-int4"], batch_size=1, threads=1)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "SST-2_model").is_dir(), reason="../shared not present")
def test_default_fp32_path_gives_pytorchs_labels_on_all_dev_samples(tmp_path):
    """`infer` with no --backend (what ais_inference.sh runs) and every exact candidate it may choose."""
    from tinybert_infer.data.features import preprocess
    from tinybert_infer.eval.metrics import evaluate

    oracle = json.loads((SHARED / "reference" / "sst2_dev_reference_predictions.json").read_text())
    model_dir, dev = SHARED / "SST-2_model", SHARED / "glue_dir" / "SST-2" / "dev.tsv"
    bs = 32
    export_checkpoint(model_dir, bs, tmp_path, tsv_path=dev)
    preprocess(dev, model_dir / "vocab.txt", tmp_path / "bert_bin", show_progress=False)
    inputs = ",".join(f"bert_bin/{n}" for n in INPUT_NAMES)
    proc = run_cli("infer", "--batchsize", bs, "--input", inputs, "--output", "result", "--output_dirname", "auto",
                   "--model_dir", model_dir, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "result" / "auto_summary.json").read_text())
    assert summary["backend"]["selected_by"] == "auto" and summary["backend"]["variant"] in FP32_CANDIDATES
    preds = evaluate(tmp_path / "result" / "auto", tmp_path / "bert_bin", write=False).predictions
    assert preds.tolist() == oracle["preds"]
    sim = tmp_path / f"TinyBERT_sim_bs{bs}.onnx"
    arts = build_artefacts(sim, list(FP32_CANDIDATES), batch_size=bs, threads=2)
    from tinybert_infer.run.inference import run_files

    for name in FP32_CANDIDATES:
        backend = make_variant_backend(name, artefact_path(sim, name) if name != "onnxruntime-fused" else arts[name].path,
                                       threads=2)
        report = run_files(backend, [tmp_path / "bert_bin" / n for n in INPUT_NAMES], tmp_path / "result",
                           output_dirname=name, outfmt="BIN", show_progress=False)
        assert evaluate(report.result_dir, tmp_path / "bert_bin", write=False).predictions.tolist() == oracle["preds"], name


def test_timing_is_at_width_64_unless_varied_widths_are_asked_for():
    """PyTorch eager takes any width (seq_len None), yet its table row must be timed at 64 like the others."""
    from tinybert_infer.backends.base import Backend
    from tinybert_infer.plan.timing import DYNAMIC_PROBE_WIDTHS, measure_backend

    class Recorder(Backend):
        name = "recorder"

        def __init__(self):
            self.widths = set()

        def run(self, feeds):
            self.widths.add(feeds["input_ids"].shape[1])
            return np.zeros((len(feeds["input_ids"]), 2), np.float32)

    static, varied = Recorder(), Recorder()
    measure_backend(static, 4, FAST)
    measure_backend(varied, 4, TimingPolicy(warmup_s=0.0, warmup_runs=1, min_s=0.0, min_runs=10, max_s=1.0),
                    varied_widths=True)
    assert static.widths == {64}
    assert varied.widths == set(DYNAMIC_PROBE_WIDTHS)


def test_listing_the_int8_candidates_imports_neither_nncf_nor_torch():
    """A cached `score --precision auto` only needs to know NNCF is there; importing it (and torch) cost 1.5 s."""
    import subprocess
    import sys

    code = ("import sys; from tinybert_infer.plan.planner import candidate_plans; "
            "plans = candidate_plans('int8', dynamic_model='TinyBERT_sim_dyn.onnx', batch_size=8, threads=2); "
            "assert any(p.variant == 'openvino-int8' for p in plans); "
            "print(sorted(m for m in ('nncf', 'torch') if m in sys.modules))")
    import tinybert_infer

    repo_root = str(Path(tinybert_infer.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root)
    assert out.stdout.strip() == "[]"
