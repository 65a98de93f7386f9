"""Stage 1: the ONNX contract (names, dtypes, static shapes, opset) and parity with PyTorch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import run_cli_in_process, run_script
from tinybert_infer.checkpoint import load_model
from tinybert_infer.export import export_checkpoint


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
    from tinybert_infer.data import encode, make_tokenizer

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
    from tinybert_infer.synthetic import write_random_checkpoint

    folder = write_random_checkpoint(tmp_path / "ck", **shape)
    export_checkpoint(folder, 2, tmp_path, tsv_path=tiny_tsv)
    _, outputs = graph_io(tmp_path / "TinyBERT_sim_bs2.onnx")
    assert outputs[0][2] == [2, shape.get("num_labels", 2)]


def test_pth2onnx_script_prints_the_difference(tmp_path, tiny_checkpoint, tiny_tsv):
    proc = run_script("pth2onnx.sh", "2", cwd=tmp_path,
                      env={"TINYBERT_MODEL_DIR": str(tiny_checkpoint), "TINYBERT_DATA_DIR": str(tiny_tsv.parent)})
    assert proc.returncode == 0, proc.stderr
    assert "TinyBERT_sim_bs2.onnx: max |logit diff| vs PyTorch = " in proc.stdout
    assert (tmp_path / "TinyBERT_bs2.onnx").is_file() and (tmp_path / "TinyBERT_sim_bs2.onnx").is_file()


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
