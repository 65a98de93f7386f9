"""`score` on the shared SST-2 checkpoint (slow): --engine ray gives, row for row, --engine local's output on
dev, dev x20 and dev in 4 shards, and PyTorch's labels on dev (the oracle in ../shared/reference)."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, SHARED
from score_helpers import read_predictions
from tinybert_infer.score.command import score_corpus

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (SHARED / "SST-2_model").is_dir(), reason="../shared not present")]
MODEL = SHARED / "SST-2_model"
DEV = SHARED / "glue_dir" / "SST-2" / "dev.tsv"


@pytest.fixture(scope="module")
def onnx(tmp_path_factory):
    from tinybert_infer.export.onnx import export_dynamic_checkpoint

    return export_dynamic_checkpoint(MODEL, tmp_path_factory.mktemp("shared_dyn"), tsv_path=DEV).sim_path


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, object_store_memory=256 << 20, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def oracle():
    return json.loads((SHARED / "reference" / "sst2_dev_reference_predictions.json").read_text())


def corpora(tmp_path):
    header, *rows = DEV.read_text(encoding="utf-8").splitlines(keepends=True)
    x20 = tmp_path / "dev_x20.tsv"
    x20.write_text(header + "".join(rows * 20), encoding="utf-8")
    shards = tmp_path / "shards"
    shards.mkdir()
    quarter = -(-len(rows) // 4)
    for n in range(4):
        (shards / f"dev-{n}.tsv").write_text(header + "".join(rows[n * quarter:(n + 1) * quarter]), encoding="utf-8")
    return {"dev": DEV, "dev_x20": x20, "4 shards": shards}


def test_ray_equals_local_and_pytorch_on_dev(ray_local, onnx, oracle, tmp_path):
    for name, corpus in corpora(tmp_path).items():
        tables = {}
        for engine in ("local", "ray"):
            summary, folder = score_corpus(corpus, engine=engine, model=onnx, model_dir=MODEL,
                                           output_root=tmp_path / "result", show_progress=False)
            tables[engine] = read_predictions(folder / "predictions.tsv")
        assert tables["ray"] == tables["local"], name
        predictions = [int(row[-3]) for row in tables["ray"][1]]
        times = 20 if name == "dev_x20" else 1
        assert predictions == oracle["preds"] * times, name
        assert summary["accuracy"] == pytest.approx(oracle["accuracy"]), name
