"""The ONNX Runtime GPU backends (onnxruntime-cuda, onnxruntime-tensorrt): clear refusal without a GPU, never a silent CPU run.

On a host whose onnxruntime has the CUDA provider, the last test also runs stage 4 on the GPU and checks
that postprocessing gives the CPU path's accuracy.
"""

import re

import onnxruntime as ort
import pytest

from accel_support import BS, accel_base, cli, error_lines, script, tool_env, workdir  # noqa: F401
from tinybert_infer.backends import make_backend
from tinybert_infer.errors import ToolError

INPUTS = "bert_bin/input_ids,bert_bin/segment_ids,bert_bin/input_mask"
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA provider")
@pytest.mark.parametrize("backend, provider", [
    ("onnxruntime-cuda", "CUDAExecutionProvider"),
    ("onnxruntime-tensorrt", "TensorrtExecutionProvider"),
])
def test_without_a_gpu_provider_it_is_one_clear_line_and_nothing_is_written(workdir, tmp_path, backend, provider):
    proc = cli("infer", "--backend", backend, "--model", f"TinyBERT_sim_bs{BS}.onnx", "--batchsize", BS,
               "--input", INPUTS, "--output", "result", "--outfmt", "TXT", cwd=workdir, env=tool_env(tmp_path))
    assert proc.returncode == 7
    assert proc.stderr.strip().splitlines() == error_lines(proc)
    assert f"has no {provider}" in proc.stderr and "onnxruntime-gpu" in proc.stderr
    assert not (workdir / "result").exists()


def test_a_provider_that_does_not_start_is_refused_not_replaced_by_the_cpu(workdir, monkeypatch):
    if HAS_CUDA:
        pytest.skip("the CUDA provider is really available here")
    # Pretend the provider is installed: ONNX Runtime then warns and runs on the CPU; that must be an error.
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(ToolError, match="CUDAExecutionProvider did not start"):
        make_backend("onnxruntime-cuda", onnx_path=workdir / f"TinyBERT_sim_bs{BS}.onnx")


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_gpu_backend_scores_like_the_cpu_path(workdir, tmp_path):
    env = tool_env(tmp_path, ais_bench=False)
    folders = {}
    for backend in ("onnxruntime-cuda", "onnxruntime"):
        proc = script("ais_inference.sh", BS, "--backend", backend, cwd=workdir, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [folders[backend]] = re.findall(r"^result folder: (\S+)$", proc.stdout, re.M)
    acc = {b: [ln for ln in script("postprocess_data.sh", f, cwd=workdir, env=env).stdout.splitlines()
               if ln.startswith("acc:")] for b, f in folders.items()}
    assert acc["onnxruntime-cuda"] == acc["onnxruntime"] != []
