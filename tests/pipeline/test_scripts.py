"""The ModelZoo flow through test/*.sh on a tiny random checkpoint, from a clean working folder."""

import re
import shutil
import sys

import numpy as np
import pytest

from conftest import (ROOT, SENTENCES, WORDS, clean_environ, early_job, early_result, run_cli_in_process, run_script,
                      write_tsv)
from accel_support import seed_auto_choice
from tinybert_infer.models.synthetic import write_random_checkpoint


@pytest.fixture()
def env(tiny_checkpoint, tiny_tsv):
    return {"TINYBERT_MODEL_DIR": str(tiny_checkpoint), "TINYBERT_DATA_DIR": str(tiny_tsv.parent)}


def folder_of(stdout):
    return re.search(r"^result folder: (\S+)$", stdout, re.M).group(1)


def test_stages_one_by_one_and_backends_agree(tmp_path, env, pth2onnx_run):
    proc, exported = pth2onnx_run  # stage 1, bash test/pth2onnx.sh 4 on the same checkpoint
    assert proc.returncode == 0, proc.stderr
    for name in ("TinyBERT_bs4.onnx", "TinyBERT_sim_bs4.onnx"):
        shutil.copy2(exported / name, tmp_path / name)
    assert run_script("preprocess_data.sh", cwd=tmp_path, env=env).returncode == 0
    # auto's measurement is tested in tests/export/test_optimize.py: here its choice is cached first, as a
    # first auto run leaves it, and the script takes the default (auto) path with it
    seed_auto_choice(tmp_path)
    ort = run_script("ais_inference.sh", "4", cwd=tmp_path, env=env)
    assert ort.returncode == 0, ort.stderr
    pt = run_script("ais_inference.sh", "4", "--backend", "torch", cwd=tmp_path, env=env)
    assert pt.returncode == 0, pt.stderr
    # The default path is `--backend auto`: whichever exact-fp32 runtime measured fastest here (the cached choice).
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


@early_job("run_all_host")
def prepare_run_all_host(root):
    """bash test/run_all.sh 8 from a clean working folder on the tiny checkpoint (tiny_checkpoint's seed), with a
    named backend: auto's measurement is the subject of the test above, not of this one."""
    checkpoint = write_random_checkpoint(root / "ckpt" / "SST-2_model", words=WORDS, seed=1)
    data = write_tsv(root / "glue_dir" / "SST-2" / "dev.tsv").parent
    work = root / "work"
    work.mkdir()
    env = dict(clean_environ(), PYTHON=sys.executable, TINYBERT_MODEL_DIR=str(checkpoint),
               TINYBERT_DATA_DIR=str(data), TINYBERT_BACKEND="onnxruntime")
    return ["bash", ROOT / "test" / "run_all.sh", "8"], work, env


@pytest.fixture()
def run_all_host(tmp_path_factory):
    """The finished run_all.sh run (started early: conftest.EARLY_JOBS) and its folder."""
    return early_result("run_all_host", tmp_path_factory)


def test_run_all_prints_accuracy_and_throughput(run_all_host):
    proc, _ = run_all_host
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert re.match(r"=== TinyBERT bs8: acc:0\.\d{4}, throughput [\d.]+ samples/s", last)
