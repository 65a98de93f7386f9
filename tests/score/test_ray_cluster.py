"""`score --engine ray` on a simulated 3-node cluster (ray.cluster_utils.Cluster: a head without CPUs and two
1-CPU workers, all on this host): a worker node removed mid-run, and every row still arrives exactly once."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import ROOT
from score_helpers import read_predictions, tiny_dyn_onnx, write_shards  # noqa: F401
from tinybert_infer.score.command import score_corpus
from tinybert_infer.score.ray_engine import DELAY_ENV

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def test_node_removed_mid_run(tmp_path, tiny_checkpoint, tiny_dyn_onnx):
    from ray.cluster_utils import Cluster

    corpus = tmp_path / "corpus"
    write_shards(corpus, [200, 200, 200])
    local, folder = score_corpus(corpus, model=tiny_dyn_onnx, model_dir=tiny_checkpoint, chunk_rows=10,
                                 output_root=tmp_path / "local", show_progress=False)
    expected = read_predictions(folder / "predictions.tsv")
    delay = tmp_path / "delay"
    delay.write_text("0.5")
    store = 128 << 20
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": store})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=store)
        doomed = cluster.add_node(num_cpus=1, object_store_memory=store)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), DELAY_ENV: str(delay)}})
        removed = threading.Event()

        def remove_when_rows_arrive():
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if list((tmp_path / "result").glob("*/.staging/run-*")) or any(
                        p.stat().st_size > 300 for p in (tmp_path / "result").glob("*/.staging/predictions.tsv")):
                    cluster.remove_node(doomed)
                    removed.set()
                    delay.unlink()  # the rest at full speed
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=remove_when_rows_arrive, daemon=True)
        watcher.start()
        summary, folder = score_corpus(corpus, engine="ray", model=tiny_dyn_onnx, model_dir=tiny_checkpoint,
                                       chunk_rows=10, output_root=tmp_path / "result", show_progress=False)
        watcher.join(timeout=5)
        assert removed.is_set(), "the run ended before a node could be removed"
        rows = read_predictions(folder / "predictions.tsv")
        keys = [(r[0], r[1]) for r in rows[1]]
        assert len(keys) == len(set(keys)) == 600
        assert rows == expected
        assert summary["ray"]["actors"] == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
