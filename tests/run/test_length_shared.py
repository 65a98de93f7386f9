"""Length-aware batching on the shared SST-2 checkpoint and all 872 dev sentences (slow; run with -m slow).

Acceptance of issue 6: the same labels as the static-64 path, logits within 1e-4, at BS 1 8 32 64 (fp32).
"""

import json

import numpy as np
import pytest

from conftest import SHARED
from tinybert_infer.layout import INPUT_NAMES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED / "SST-2_model").is_dir(), reason="../shared not present"),
]
BATCH_SIZES = [1, 8, 32, 64]
MODEL = SHARED / "SST-2_model"
TSV = SHARED / "glue_dir" / "SST-2" / "dev.tsv"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from tinybert_infer.data.features import preprocess
    from tinybert_infer.export.onnx import export_dynamic_checkpoint

    path = tmp_path_factory.mktemp("dynamic_shared")
    preprocess(TSV, MODEL / "vocab.txt", path / "bert_bin", show_progress=False)
    report = export_dynamic_checkpoint(MODEL, path, tsv_path=TSV)
    assert report.max_abs_diff_sim <= 1e-4
    return path, report.sim_path


@pytest.fixture(scope="module")
def oracle():
    return json.loads((SHARED / "reference" / "sst2_dev_reference_predictions.json").read_text())["preds"]


def scored(result_dir, bin_dir):
    from tinybert_infer.eval.metrics import evaluate

    return evaluate(result_dir, bin_dir, write=False)


@pytest.mark.parametrize("bs", BATCH_SIZES)
def test_dynamic_length_equals_the_static_64_path(work, oracle, bs):
    from tinybert_infer.backends.onnxruntime import OnnxRuntimeBackend
    from tinybert_infer.run.length import run_files_by_length
    from tinybert_infer.export.onnx import export_checkpoint
    from tinybert_infer.run.inference import run_files

    path, dynamic_model = work
    bin_dir = path / "bert_bin"
    dirs = [bin_dir / n for n in INPUT_NAMES]
    static_model = export_checkpoint(MODEL, bs, path, tsv_path=TSV, validate_count=8).sim_path
    common = dict(batch_size=bs, outfmt="BIN", show_progress=False)
    static = scored(run_files(OnnxRuntimeBackend(static_model), dirs, path / "result", output_dirname=f"static{bs}",
                              **common).result_dir, bin_dir)
    report = run_files_by_length(OnnxRuntimeBackend(dynamic_model), dirs, path / "result",
                                 output_dirname=f"dynamic{bs}", **common)
    dynamic = scored(report.result_dir, bin_dir)
    assert len(dynamic.predictions) == 872
    np.testing.assert_array_equal(dynamic.predictions, static.predictions)
    assert np.max(np.abs(dynamic.logits - static.logits)) <= 1e-4
    assert dynamic.predictions.tolist() == oracle
    assert report.summary["padded_tokens"] * 2 < report.summary["static_tokens"]


def test_torch_eager_dynamic_length_equals_the_static_64_path(work):
    from tinybert_infer.backends.torch_eager import TorchBackend
    from tinybert_infer.run.length import run_files_by_length
    from tinybert_infer.run.inference import run_files

    path, _ = work
    bin_dir = path / "bert_bin"
    dirs = [bin_dir / n for n in INPUT_NAMES]
    common = dict(batch_size=32, outfmt="BIN", show_progress=False)
    static = scored(run_files(TorchBackend(MODEL, batch_size=32), dirs, path / "result", output_dirname="torch_static",
                              **common).result_dir, bin_dir)
    dynamic = scored(run_files_by_length(TorchBackend(MODEL), dirs, path / "result", output_dirname="torch_dynamic",
                                         **common).result_dir, bin_dir)
    np.testing.assert_array_equal(dynamic.predictions, static.predictions)
    assert np.max(np.abs(dynamic.logits - static.logits)) <= 1e-4


def test_tsv_fed_directly_equals_the_preprocessed_files(work):
    from tinybert_infer.run.length import read_sample_files, read_tsv_samples

    path, _ = work
    from_tsv = read_tsv_samples(TSV, MODEL / "vocab.txt")
    from_files = read_sample_files([path / "bert_bin" / n for n in INPUT_NAMES])
    for name in INPUT_NAMES:
        np.testing.assert_array_equal(from_tsv.feats[name], from_files.feats[name])
    assert from_tsv.lengths.max() == 55 and int(from_tsv.lengths.sum()) == 21943
