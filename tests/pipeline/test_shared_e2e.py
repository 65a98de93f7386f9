"""End-to-end on the shared SST-2 checkpoint and dev.tsv (slow; run with -m slow)."""

import json
import re

import numpy as np
import pytest

from conftest import SHARED, run_script

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED / "SST-2_model").is_dir(), reason="../shared not present"),
]
BATCH_SIZES = [1, 4, 8, 16, 32, 64]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    path = tmp_path_factory.mktemp("shared_e2e")
    env = {"TINYBERT_MODEL_DIR": str(SHARED / "SST-2_model"), "TINYBERT_DATA_DIR": str(SHARED / "glue_dir" / "SST-2")}
    proc = run_script("preprocess_data.sh", cwd=path, env=env)
    assert proc.returncode == 0, proc.stderr
    return path, env


@pytest.fixture(scope="module")
def oracle():
    return json.loads((SHARED / "reference" / "sst2_dev_reference_predictions.json").read_text())


def read_folder_logits(folder, n=872):
    return np.array([[float(v) for v in (folder / f"input{i}_0.txt").read_text().split()] for i in range(n)])


def infer_and_score(work, bs, *extra):
    path, env = work
    run = run_script("ais_inference.sh", str(bs), *extra, cwd=path, env=env, timeout=900)
    assert run.returncode == 0, run.stderr
    folder = re.search(r"^result folder: (\S+)$", run.stdout, re.M).group(1)
    post = run_script("postprocess_data.sh", folder, cwd=path, env=env)
    assert post.returncode == 0, post.stderr
    return path / "result" / folder, post.stdout.splitlines()[0]


@pytest.mark.parametrize("bs", BATCH_SIZES)
def test_every_batch_size_matches_the_pytorch_oracle(work, oracle, bs):
    path, env = work
    export = run_script("pth2onnx.sh", str(bs), cwd=path, env=env, timeout=900)
    assert export.returncode == 0, export.stderr
    diffs = [float(x) for x in re.findall(r"max \|logit diff\| vs PyTorch = (\S+)", export.stdout)]
    assert len(diffs) == 2 and max(diffs) <= 1e-4
    folder, acc_line = infer_and_score(work, bs, "--backend", "onnxruntime")
    logits = read_folder_logits(folder)
    assert logits.argmax(1).tolist() == oracle["preds"]  # every sample, padded last batch included
    assert np.max(np.abs(logits - np.array(oracle["logits"]))) < 1e-4
    # Accuracy from this run's own predictions against dev.tsv's labels (read here, not by the package), and
    # against what the checkpoint's training recorded: not the oracle compared with a file beside it.
    with open(SHARED / "glue_dir" / "SST-2" / "dev.tsv", encoding="utf-8") as handle:
        labels = np.array([int(line.rstrip("\n").split("\t")[1]) for line in list(handle)[1:] if line.strip()])
    accuracy = float(np.mean(logits.argmax(1) == labels))
    assert acc_line == f"acc:{accuracy:.4f}"
    training = json.loads((SHARED / "SST-2_model" / "training.json").read_text())
    assert abs(accuracy - training["dev_accuracy"]) < 1e-9


@pytest.mark.parametrize("bs", [8, 64])
def test_torch_backend_agrees_sample_by_sample(work, oracle, bs):
    folder, acc_line = infer_and_score(work, bs, "--backend", "torch")
    logits = read_folder_logits(folder)
    assert logits.argmax(1).tolist() == oracle["preds"]
    assert acc_line == f"acc:{oracle['accuracy']:.4f}"
