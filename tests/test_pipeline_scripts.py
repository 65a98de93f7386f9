"""The ModelZoo flow through test/*.sh on a tiny random checkpoint, from a clean working folder."""

import re

import numpy as np
import pytest

from conftest import SENTENCES, run_cli_in_process, run_script


@pytest.fixture()
def env(tiny_checkpoint, tiny_tsv):
    return {"TINYBERT_MODEL_DIR": str(tiny_checkpoint), "TINYBERT_DATA_DIR": str(tiny_tsv.parent)}


def folder_of(stdout):
    return re.search(r"^result folder: (\S+)$", stdout, re.M).group(1)


def test_stages_one_by_one_and_backends_agree(tmp_path, env):
    assert run_script("pth2onnx.sh", "4", cwd=tmp_path, env=env).returncode == 0
    assert run_script("preprocess_data.sh", cwd=tmp_path, env=env).returncode == 0
    ort = run_script("ais_inference.sh", "4", cwd=tmp_path, env=env)
    assert ort.returncode == 0, ort.stderr
    pt = run_script("ais_inference.sh", "4", "--backend", "torch", cwd=tmp_path, env=env)
    assert pt.returncode == 0, pt.stderr
    # The default path is `--backend auto`: whichever exact-fp32 runtime measured fastest here.
    assert "backend: torch" in pt.stdout and re.search(r"backend: (onnxruntime|openvino) ", ort.stdout)
    acc = []
    post_ort = run_script("postprocess_data.sh", folder_of(ort.stdout), cwd=tmp_path, env=env)
    # the second folder postprocessed in-process: what the script runs, without a second interpreter start
    post_pt = run_cli_in_process("postprocess", "--result_dir", f"result/{folder_of(pt.stdout)}", cwd=tmp_path)
    for post in (post_ort, post_pt):
        assert post.returncode == 0, post.stderr
        acc.append(post.stdout.splitlines()[0])
        assert acc[-1].startswith("acc:")
    assert acc[0] == acc[1]
    a = [(tmp_path / "result" / folder_of(ort.stdout) / f"input{i}_0.txt").read_text().split() for i in range(len(SENTENCES))]
    b = [(tmp_path / "result" / folder_of(pt.stdout) / f"input{i}_0.txt").read_text().split() for i in range(len(SENTENCES))]
    assert np.allclose(np.array(a, float), np.array(b, float), atol=2e-6)


def test_run_all_prints_accuracy_and_throughput(tmp_path, env):
    # A named backend: auto's measurement is the subject of the test above, not of this one.
    proc = run_script("run_all.sh", "8", cwd=tmp_path, env=dict(env, TINYBERT_BACKEND="onnxruntime"))
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert re.match(r"=== TinyBERT bs8: acc:0\.\d{4}, throughput [\d.]+ samples/s", last)
