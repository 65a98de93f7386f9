"""Stage 4 on host backends: ais_bench's batching, padding, naming, formats and summary."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from conftest import SENTENCES, run_cli_in_process
from error_helpers import assert_error, snapshot
from tinybert_infer.backends import make_backend
from tinybert_infer.models.checkpoint import load_model
from tinybert_infer.data.features import preprocess
from tinybert_infer.errors import ResultError
from tinybert_infer.export.onnx import export_checkpoint
from tinybert_infer.run.inference import iter_batches, run_files
from tinybert_infer.run.results import format_txt, read_output

N = len(SENTENCES)  # 13: not a multiple of 2, 4 or 5, so the last batch is padded


@pytest.fixture()
def workdir(tmp_path, tiny_checkpoint, tiny_tsv):
    preprocess(tiny_tsv, tiny_checkpoint / "vocab.txt", tmp_path / "bert_bin", show_progress=False)
    return tmp_path


def bs4_onnx(tiny_exports, workdir):
    """TinyBERT_sim_bs4.onnx of the tiny checkpoint in workdir: the session's export (what exporting here writes)."""
    shutil.copy(tiny_exports["static"].sim_path, workdir / "TinyBERT_sim_bs4.onnx")


def input_dirs(workdir):
    return [workdir / "bert_bin" / n for n in ("input_ids", "segment_ids", "input_mask")]


def torch_logits(checkpoint_dir, workdir):
    _, model = load_model(checkpoint_dir)
    feats = [np.stack([np.fromfile(d / f"input{i}.bin", dtype=np.int64) for i in range(N)]) for d in input_dirs(workdir)]
    with torch.inference_mode():
        return model(*map(torch.from_numpy, feats)).numpy()


def test_batches_pad_the_last_chunk():
    assert list(iter_batches(5, 2)) == [[0, 1], [2, 3], [4, None]]
    assert list(iter_batches(4, 4)) == [[0, 1, 2, 3]]
    assert list(iter_batches(1, 3)) == [[0, None, None]]


@pytest.mark.parametrize("bs", [1, 4, 5])
def test_onnxruntime_run_matches_pytorch_per_sample(workdir, tiny_checkpoint, tiny_tsv, bs):
    export_checkpoint(tiny_checkpoint, bs, workdir, tsv_path=tiny_tsv)
    backend = make_backend("onnxruntime", onnx_path=workdir / f"TinyBERT_sim_bs{bs}.onnx")
    report = run_files(backend, input_dirs(workdir), workdir / "result", outfmt="TXT", show_progress=False)
    names = sorted(p.name for p in report.result_dir.iterdir())
    assert names == sorted(f"input{i}_0.txt" for i in range(N))  # padded slots write nothing
    got = np.stack([read_output(report.result_dir / f"input{i}_0.txt", 2) for i in range(N)])
    want = torch_logits(tiny_checkpoint, workdir)
    assert np.max(np.abs(got - want)) < 1e-4
    assert (got.argmax(1) == want.argmax(1)).all()
    summary = json.loads((workdir / "result" / f"{report.result_dir.name}_summary.json").read_text())
    batches = -(-N // bs)
    assert summary["NPU_compute_time"]["count"] == batches == len(summary["npu_compute_time_list"])
    assert summary["throughput"] == pytest.approx(1000 * bs / summary["NPU_compute_time"]["mean"])
    assert sorted(summary["filesinfo"], key=int) == [str(i) for i in range(N)]
    assert summary["backend"]["backend"] == "onnxruntime" and summary["backend"]["onnxruntime"]
    assert re.fullmatch(r"\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d", report.result_dir.name)


def test_txt_format_is_ais_bench_s():
    assert format_txt(np.array([[0.1234567, -1.5]], dtype=np.float32)) == b"0.123457 -1.500000 \n"
    assert format_txt(np.array([[1e-9, 12345.0]], dtype=np.float32)) == b"0.000000 12345.000000 \n"


@pytest.mark.parametrize("fmt", ["BIN", "NPY"])
def test_bin_and_npy_outputs(workdir, tiny_checkpoint, tiny_exports, fmt):
    bs4_onnx(tiny_exports, workdir)
    backend = make_backend("onnxruntime", onnx_path=workdir / "TinyBERT_sim_bs4.onnx")
    report = run_files(backend, input_dirs(workdir), workdir / "result", outfmt=fmt, show_progress=False)
    ext = fmt.lower()
    path = report.result_dir / f"input3_0.{ext}"
    if fmt == "BIN":
        assert path.stat().st_size == 8  # two float32 values, no header
    else:
        assert np.load(path).shape == (1, 2)
    assert np.max(np.abs(read_output(path, 2) - torch_logits(tiny_checkpoint, workdir)[3])) < 1e-4


def test_torch_backend_agrees_with_onnxruntime(workdir, tiny_checkpoint, tiny_exports):
    bs4_onnx(tiny_exports, workdir)
    ort_run = run_files(make_backend("onnxruntime", onnx_path=workdir / "TinyBERT_sim_bs4.onnx"),
                        input_dirs(workdir), workdir / "result", outfmt="NPY", output_dirname="onnxruntime", show_progress=False)
    pt_run = run_files(make_backend("torch", checkpoint_dir=tiny_checkpoint, batch_size=4),
                       input_dirs(workdir), workdir / "result", outfmt="NPY", output_dirname="pt", show_progress=False)
    for i in range(N):
        a = read_output(ort_run.result_dir / f"input{i}_0.npy")
        b = read_output(pt_run.result_dir / f"input{i}_0.npy")
        assert np.max(np.abs(a - b)) < 1e-4
    assert pt_run.summary["backend"]["torch"] == torch.__version__


def test_loop_and_warmup_counts(workdir, tiny_checkpoint):
    backend = make_backend("torch", checkpoint_dir=tiny_checkpoint, batch_size=5)
    report = run_files(backend, input_dirs(workdir), workdir / "result", loop=3, warmup_count=0, show_progress=False)
    assert report.summary["NPU_compute_time"]["count"] == 3 * 3


def test_never_overwrites_an_earlier_result(workdir, tiny_checkpoint):
    backend = make_backend("torch", checkpoint_dir=tiny_checkpoint, batch_size=4)
    first = run_files(backend, input_dirs(workdir), workdir / "result", show_progress=False)
    second = run_files(backend, input_dirs(workdir), workdir / "result", show_progress=False)
    assert first.result_dir != second.result_dir
    run_files(backend, input_dirs(workdir), workdir / "result", output_dirname="mine", show_progress=False)
    before = snapshot(workdir / "result")
    proc = run_cli_in_process("infer", "--backend", "torch", "--model_dir", tiny_checkpoint, "--batchsize", "4",
                              "--input", ",".join(map(str, input_dirs(workdir))), "--output", workdir / "result",
                              "--output_dirname", "mine", cwd=workdir)
    assert_error(proc.returncode, proc.stderr, ResultError.exit_code, workdir / "result" / "mine", "already exists")
    assert snapshot(workdir / "result") == before  # the earlier run untouched, nothing added beside it


def test_infer_cli_prints_summary_backend_and_folder(workdir, tiny_checkpoint, tiny_exports, short_auto_timing):
    bs4_onnx(tiny_exports, workdir)
    proc = run_cli_in_process("infer", "--model", "TinyBERT_sim_bs4.onnx", "--batchsize", "4", "--outfmt", "TXT",
                              "--input", "bert_bin/input_ids,bert_bin/segment_ids,bert_bin/input_mask",
                              "--output", "result", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "[INFO] -----------------Performance Summary------------------" in proc.stdout
    assert re.search(r"\[INFO\] throughput 1000\*batchsize\.mean\(4\)/NPU_compute_time\.mean\([\d.]+\): [\d.]+", proc.stdout)
    assert re.search(r"backend: (onnxruntime|openvino) ", proc.stdout)  # default: auto, the measured fastest fp32
    folder = re.search(r"^result folder: (\S+)$", proc.stdout, re.M).group(1)
    assert (workdir / "result" / folder / "input12_0.txt").is_file()


def test_pure_inference_mode(workdir, tiny_checkpoint, tiny_tsv):
    export_checkpoint(tiny_checkpoint, 2, workdir, tsv_path=tiny_tsv)
    # A named backend: pure inference under --backend auto is test_optimize's subject (the auto CLI test).
    proc = run_cli_in_process("infer", "--model", "TinyBERT_sim_bs2.onnx", "--loop", "5", "--batchsize", "2",
                              "--backend", "onnxruntime", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "NPU_compute_time (ms)" in proc.stdout and not (workdir / "result").exists()


def test_warm_up_runs_on_a_cold_backend_only(workdir, tiny_checkpoint):
    """A backend that has run once skips ais_bench's warm-up on its next job (and records it)."""
    from tinybert_infer.backends.base import WrappedBackend

    class Counting(WrappedBackend):
        calls = 0

        def run(self, feeds):
            Counting.calls += 1
            return self.inner.run(feeds)

    inner = make_backend("torch", checkpoint_dir=tiny_checkpoint, batch_size=4)
    runs = []
    for _ in range(2):  # a wrapper made afresh per job, as packed runs do: warmth is the runtime's
        Counting.calls = 0
        report = run_files(Counting(inner), input_dirs(workdir), workdir / "result", show_progress=False)
        runs.append((report.summary["warmup_runs"], Counting.calls))
    assert runs == [(1, 1), (0, 0)]  # run_pipelined goes straight to the inner backend; run() is the warm-up
    report = run_files(make_backend("torch", checkpoint_dir=tiny_checkpoint, batch_size=4), input_dirs(workdir),
                       workdir / "result", warmup_count=0, show_progress=False)
    assert report.summary["warmup_runs"] == 0
