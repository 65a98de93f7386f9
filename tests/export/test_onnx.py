"""Stage 1: the ONNX contract (names, dtypes, static shapes, opset) and parity with PyTorch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import run_cli_in_process
from tinybert_infer.models.checkpoint import load_model
from tinybert_infer.export.onnx import export_checkpoint


def graph_io(path):
    graph = onnx.load(str(path)).graph
    inits = {i.name for i in graph.initializer}
    def desc(v):
        t = v.type.tensor_type
        return v.name, t.elem_type, [d.dim_value for d in t.shape.dim]
    return [desc(v) for v in graph.input if v.name not in inits], [desc(v) for v in graph.output]


@pytest.mark.parametrize("bs", [1, 3])
def test_export_writes_both_files_with_the_contract(tmp_path, tiny_checkpoint, tiny_tsv, bs):
    report = export_checkpoint(tiny_checkpoint, bs, tmp_path, tsv_path=tiny_tsv)
    for path in (tmp_path / f"TinyBERT_bs{bs}.onnx", tmp_path / f"TinyBERT_sim_bs{bs}.onnx"):
        onnx.checker.check_model(str(path))
        inputs, outputs = graph_io(path)
        assert inputs == [(n, onnx.TensorProto.INT64, [bs, 64]) for n in ("input_ids", "segment_ids", "input_mask")]
        assert outputs == [("output", onnx.TensorProto.FLOAT, [bs, 2])]
        assert onnx.load(str(path)).opset_import[0].version == 11
    assert report.max_abs_diff <= 1e-4 and report.max_abs_diff_sim <= 1e-4
    assert "sentences" in report.validation_source
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_onnx_matches_pytorch_on_real_sentences(tiny_checkpoint, tiny_tsv, tiny_exports):
    from tinybert_infer.data.features import encode, make_tokenizer

    # export_checkpoint(tiny_checkpoint, 4, ..., tsv_path=the tiny TSV): the session's export
    checkpoint, model = load_model(tiny_checkpoint)
    texts = [line.split("\t")[0] for line in tiny_tsv.read_text().splitlines()[1:5]]
    feats = encode(make_tokenizer(checkpoint.vocab_file), texts)
    session = ort.InferenceSession(str(tiny_exports["static"].sim_path), providers=["CPUExecutionProvider"])
    got = session.run(None, feats)[0]
    with torch.inference_mode():
        want = model(*(torch.from_numpy(feats[n]) for n in ("input_ids", "segment_ids", "input_mask"))).numpy()
    assert np.max(np.abs(got - want)) < 1e-4
    assert len(set(np.round(got[:, 0], 3))) > 1  # real, varied inputs rather than constant rows


def test_opset_is_configurable(tmp_path, tiny_checkpoint, tiny_tsv):
    export_checkpoint(tiny_checkpoint, 2, tmp_path, tsv_path=tiny_tsv, opset=14)
    assert onnx.load(str(tmp_path / "TinyBERT_sim_bs2.onnx")).opset_import[0].version == 14


@pytest.mark.parametrize("shape", [
    dict(num_hidden_layers=1, hidden_size=24, num_attention_heads=2, intermediate_size=30),
    dict(num_hidden_layers=3, hidden_size=40, num_attention_heads=5, intermediate_size=80, num_labels=3),
])
def test_other_depths_widths_heads_and_labels_export(tmp_path, tiny_tsv, shape):
    from tinybert_infer.models.synthetic import write_random_checkpoint

    folder = write_random_checkpoint(tmp_path / "ck", **shape)
    export_checkpoint(folder, 2, tmp_path, tsv_path=tiny_tsv)
    _, outputs = graph_io(tmp_path / "TinyBERT_sim_bs2.onnx")
    assert outputs[0][2] == [2, shape.get("num_labels", 2)]


def test_pth2onnx_script_prints_the_difference(pth2onnx_run):
    proc, folder = pth2onnx_run
    assert proc.returncode == 0, proc.stderr
    assert "TinyBERT_sim_bs4.onnx: max |logit diff| vs PyTorch = " in proc.stdout
    assert (folder / "TinyBERT_bs4.onnx").is_file() and (folder / "TinyBERT_sim_bs4.onnx").is_file()


def test_export_fails_when_parity_tolerance_is_exceeded(tmp_path, tiny_checkpoint, tiny_tsv):
    from tinybert_infer.errors import ExportError

    with pytest.raises(ExportError, match="exceeds"):
        export_checkpoint(tiny_checkpoint, 1, tmp_path, tsv_path=tiny_tsv, tolerance=-1.0)
    assert list(tmp_path.glob("*.onnx")) == []


def test_cli_model_dir_flag(tmp_path, tiny_checkpoint, tiny_tsv):
    proc = run_cli_in_process("export", "--batch_size", "1", "--model_dir", tiny_checkpoint, "--data_dir",
                              tiny_tsv.parent, "--output_dir", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "TinyBERT_sim_bs1.onnx").is_file()


def _softmax_query_rows(onnx_path) -> list:
    """For each attention Softmax of a graph, how many query rows it computes (shape inference)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.output)}
    return [shapes[n.output[0]][2] for n in model.graph.node if n.op_type == "Softmax"]


def test_full_last_layer_flag_is_wired_through_the_cli(tmp_path, tiny_checkpoint, tiny_tsv):
    """`export` computes only [CLS]'s query row in the last layer; `--full_last_layer` every row. Both pass the
    parity check against the textbook forward."""
    from error_helpers import run_main

    rows = {}
    for name, flags in (("cls", ()), ("full", ("--full_last_layer",))):
        code, out, err = run_main("export", "--batch_size", "4", "--model_dir", tiny_checkpoint, "--data_dir",
                                  tiny_tsv.parent, "--output_dir", tmp_path / name, *flags)
        assert code == 0, err
        assert "max |logit diff| vs PyTorch = " in out
        rows[name] = _softmax_query_rows(tmp_path / name / "TinyBERT_sim_bs4.onnx")
    layers = len(rows["full"])
    assert rows["cls"] == [64] * (layers - 1) + [1]
    assert rows["full"] == [64] * layers


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_an_interrupted_export_leaves_the_earlier_graphs_whole_and_nothing_beside_them(tmp_path, tiny_checkpoint,
                                                                                       tiny_tsv, sig):
    """Ctrl-C or kill -9 while a new export is being written and validated: the graphs of the earlier export
    stay byte for byte, and (after Ctrl-C) no staged file is left beside them. The export is stopped (SIGSTOP)
    while a staged file exists before it is signalled, so a starved test process never signals a finished run."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT, clean_environ
    from error_helpers import leftovers, run_main, snapshot, stop_mid_way
    from tinybert_infer.errors import INTERRUPTED_EXIT
    from tinybert_infer.models.synthetic import write_random_checkpoint

    out = tmp_path / "out"
    code, _, err = run_main("export", "--batch_size", "4", "--model_dir", tiny_checkpoint, "--data_dir",
                            tiny_tsv.parent, "--output_dir", out)
    assert code == 0, err
    before = snapshot(out)
    other = write_random_checkpoint(tmp_path / "other", seed=9, num_hidden_layers=4, hidden_size=128,
                                    intermediate_size=512)
    proc = subprocess.Popen([sys.executable, "-m", "tinybert_infer", "export", "--batch_size", "4", "--model_dir",
                             str(other), "--data_dir", str(tiny_tsv.parent), "--output_dir", str(out),
                             "--validate_count", "64"],
                            env=dict(clean_environ(), PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not leftovers(out):
        assert proc.poll() is None, f"finished (exit {proc.returncode}) before writing anything: {proc.communicate()}"
        assert time.monotonic() < deadline, "no staged file appeared"
        time.sleep(0.005)
    returncode, err = stop_mid_way(proc, getattr(signal, sig), lambda: bool(leftovers(out)))
    if sig == "SIGINT":
        assert returncode == INTERRUPTED_EXIT and err.strip().splitlines()[-1] == "error: interrupted", err
        assert leftovers(out) == []
    else:
        assert returncode == -signal.SIGKILL
    after = snapshot(out)
    assert {k: v for k, v in after.items() if ".partial-" not in k} == before  # earlier graphs untouched
