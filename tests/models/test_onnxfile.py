"""onnxfile reads an exported graph's input shapes (and metadata: tests/models/test_checkpoint.py) as onnx does,
without importing onnx or reading the weights."""

import subprocess
import sys

from conftest import ROOT
from tinybert_infer.onnxfile import read_input_dims
from tinybert_infer.plan.select import has_dynamic_sequence


def _onnx_dims(path):
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {v.name: [d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
                     for d in v.type.tensor_type.shape.dim] for v in graph.input}


def test_input_dims_equal_onnx_s_for_static_dynamic_and_packed_graphs(tiny_exports):
    paths = [tiny_exports[k].sim_path for k in ("static", "dynamic")] + [tiny_exports["static"].onnx_path]
    paths += sorted(tiny_exports["dir"].glob("TinyBERT*packed.onnx"))
    assert len(paths) == 5  # the plain and simplified packed graphs too
    for path in paths:
        dims = read_input_dims(path)
        assert dims == _onnx_dims(path) and list(dims) == list(_onnx_dims(path)), path
    static, dynamic = read_input_dims(paths[0]), read_input_dims(paths[1])
    assert all(d == [4, 64] for d in static.values())
    assert all(len(d) == 2 and not any(isinstance(x, int) for x in d) for d in dynamic.values())
    assert not has_dynamic_sequence(paths[0]) and has_dynamic_sequence(paths[1])


def test_unreadable_files_give_none_and_a_static_verdict(tmp_path, tiny_exports):
    garbage = tmp_path / "not.onnx"
    garbage.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    cut = tmp_path / "cut.onnx"
    data = tiny_exports["dynamic"].sim_path.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    for path in (garbage, cut, tmp_path / "missing.onnx"):
        assert read_input_dims(path) is None and not has_dynamic_sequence(path)


def test_choosing_a_backend_imports_neither_onnx_nor_torch(tiny_exports):
    code = ("import sys; from tinybert_infer.plan.select import has_dynamic_sequence; "
            f"assert has_dynamic_sequence({str(tiny_exports['dynamic'].sim_path)!r}); "
            "assert not {'onnx', 'torch'} & set(sys.modules), sorted({'onnx', 'torch'} & set(sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
