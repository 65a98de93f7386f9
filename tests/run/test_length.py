"""Length-aware batching (tinybert_infer.run.length) and the dynamic-shape export, on tiny random checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli_in_process
from tinybert_infer.backends.base import Backend
from tinybert_infer.run.length import (Batch, Samples, padded_length, parse_buckets, plan_batches, read_sample_files,
                                       read_tsv_samples, real_lengths, run_files_by_length, run_samples, run_tsv)
from tinybert_infer.errors import UsageError
from tinybert_infer.layout import INPUT_NAMES
from tinybert_infer.run.results import read_output, read_summary


# ---------------------------------------------------------------- planning
def test_real_length_is_the_position_after_the_last_mask_value():
    mask = np.array([[1, 1, 1, 0, 0, 0],
                     [1, 0, 0, 0, 0, 0],
                     [1, 1, 0, 1, 0, 0],   # a hole: everything up to the last attended token stays
                     [1, 1, 1, 1, 1, 1],
                     [0, 0, 0, 0, 0, 0]])  # nothing attended: cropping would change the result, so keep it all
    assert real_lengths(mask).tolist() == [3, 1, 4, 6, 6]


def test_plan_sorts_stably_so_ties_keep_file_order_and_the_shortest_batch_is_the_partial_one():
    lengths = [5, 3, 5, 3, 7, 3, 1]
    batches = plan_batches(lengths, 3, width=10)
    # Filler rows of a static-shape compile cost the batch's length: the partial batch is the shortest one.
    assert batches == [Batch((6,), 1), Batch((1, 3, 5), 3), Batch((0, 2, 4), 7)]
    assert [len(b.indices) for b in plan_batches(lengths[:6], 3, width=10)] == [3, 3]
    fed = [i for b in batches for i in b.indices]
    assert sorted(fed) == list(range(len(lengths)))  # every sample exactly once


def test_pad_multiple_rounds_up_but_never_past_the_width():
    assert [b.length for b in plan_batches([5, 3, 9, 13], 2, width=16, pad_multiple=8)] == [8, 16]
    assert padded_length(13, 14, pad_multiple=8) == 14
    assert padded_length(16, 64, pad_multiple=8) == 16


def test_buckets_pick_the_smallest_that_fits_and_the_width_beyond_the_last():
    lengths = [2, 5, 16, 17, 40, 60]
    assert [b.length for b in plan_batches(lengths, 1, width=64, buckets=(16, 32, 48))] == [16, 16, 16, 32, 48, 64]
    assert padded_length(20, 24, buckets=(16, 32)) == 24  # a bucket wider than the inputs is not used


def test_static_mode_keeps_file_order_at_the_full_width():
    assert plan_batches([5, 3, 9], 2, width=64, mode="static") == [Batch((0, 1), 64), Batch((2,), 64)]


@pytest.mark.parametrize("text", ["", "16,x", "32,16", "16,16", "0,8", "-8"])
def test_bad_bucket_lists_are_usage_errors(text):
    with pytest.raises(UsageError, match="--buckets"):
        parse_buckets(text)


def test_pad_multiple_and_buckets_exclude_each_other():
    with pytest.raises(UsageError):
        plan_batches([3], 1, width=8, pad_multiple=8, buckets=(8,))


# ---------------------------------------------------------------- restoring per original sample (fake backend)
class EchoBackend(Backend):
    """logits = [the sample's tag (input_ids[:, 0]), the length it was fed at]; records every feed shape."""

    name = "echo"

    def __init__(self, batch_size=None, fail_on_call=None):
        self.batch_size = batch_size
        self.shapes = []
        self.calls = 0
        self.fail_on_call = fail_on_call

    def run(self, feeds):
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise RuntimeError("boom")
        ids = feeds["input_ids"]
        assert all(feeds[n].shape == ids.shape for n in INPUT_NAMES)
        self.shapes.append(ids.shape)
        return np.stack([ids[:, 0].astype(np.float32), np.full(len(ids), ids.shape[1], np.float32)], axis=1)


def tagged_samples(lengths, width=16) -> Samples:
    n = len(lengths)
    mask = (np.arange(width)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
    ids = mask * 7
    ids[:, 0] = 1000 + np.arange(n)  # the tag the echo backend returns
    feats = {"input_ids": ids, "segment_ids": np.zeros_like(ids), "input_mask": mask}
    return Samples(feats, real_lengths(mask), [f"input{i}.bin" for i in range(n)], lambda i: [f"sample {i}"])


LENGTHS = [9, 4, 9, 2, 4, 16, 4, 1, 12, 9]  # ties at 4 and 9; 10 samples -> a first batch of 1 at BS 3


def outputs(folder, n):
    return np.stack([read_output(folder / f"input{i}_0.txt") for i in range(n)])


def test_results_go_back_to_their_original_samples(tmp_path):
    backend = EchoBackend()
    report = run_samples(backend, tagged_samples(LENGTHS), tmp_path / "result", batch_size=3, outfmt="TXT",
                         output_dirname="run", warmup_count=0, show_progress=False)
    out = outputs(report.result_dir, len(LENGTHS))
    assert out[:, 0].tolist() == [1000 + i for i in range(len(LENGTHS))]
    # Sorted: [1] [2] [4 4 4] [9 9 9] [12] [16]; the partial batch (10 mod 3 = 1 sample) first, the shortest,
    # then batches of 3 -> lengths 1, 4, 9, 16.
    assert backend.shapes == [(1, 1), (3, 4), (3, 9), (3, 16)]
    # Stable order 7 | 3,1,4 (ties at 4) | 6,0,2 (ties at 9) | 9,8,5: index 6 shares a batch with 0, 9 with 5.
    assert out[:, 1].tolist() == [9, 4, 9, 4, 4, 16, 9, 1, 16, 16]
    summary = read_summary(report.result_dir)
    assert summary["mode"] == "dynamic_length"
    assert summary["real_tokens"] == sum(LENGTHS)
    assert summary["padded_tokens"] == 1 * 1 + 3 * 4 + 3 * 9 + 3 * 16
    assert summary["static_tokens"] == 4 * 3 * 16  # the static path: 4 full batches at the width
    assert set(summary["filesinfo"]) == {str(i) for i in range(len(LENGTHS))}
    assert summary["filesinfo"]["5"] == {"infiles": ["sample 5"], "outfiles": [str(report.result_dir / "input5_0.txt")]}
    for key in ("NPU_compute_time", "throughput", "batchsize", "backend", "npu_compute_time_list"):
        assert key in summary  # inference.build_summary's keys stay


def test_ties_keep_file_order_inside_the_batches(tmp_path):
    backend = EchoBackend()
    lengths = [3, 3, 3, 3, 3]
    run_samples(backend, tagged_samples(lengths), tmp_path, batch_size=2, output_dirname="r", warmup_count=0,
                show_progress=False)
    assert backend.shapes == [(1, 3), (2, 3), (2, 3)]


@pytest.mark.parametrize("kwargs, shapes", [
    ({"pad_multiple": 8}, [(1, 8), (3, 8), (3, 16), (3, 16)]),
    ({"buckets": (4, 10)}, [(1, 4), (3, 4), (3, 10), (3, 16)]),
])
def test_rounded_lengths_still_restore_every_sample(tmp_path, kwargs, shapes):
    backend = EchoBackend()
    report = run_samples(backend, tagged_samples(LENGTHS), tmp_path, batch_size=3, output_dirname="r",
                         warmup_count=0, show_progress=False, **kwargs)
    assert backend.shapes == shapes
    assert outputs(report.result_dir, len(LENGTHS))[:, 0].tolist() == [1000 + i for i in range(len(LENGTHS))]


def test_a_static_batch_model_gets_filler_rows_whose_outputs_are_dropped(tmp_path):
    backend = EchoBackend(batch_size=3)
    report = run_samples(backend, tagged_samples(LENGTHS), tmp_path, batch_size=3, output_dirname="r",
                         warmup_count=0, show_progress=False)
    assert backend.shapes[0] == (3, 1)  # the partial batch, the shortest: 1 sample and 2 filler rows
    written = sorted(p.name for p in report.result_dir.iterdir() if p.name.endswith("_0.txt"))
    assert len(written) == len(LENGTHS)
    assert read_summary(report.result_dir)["padded_tokens"] == 3 * (1 + 4 + 9 + 16)


def test_a_failing_run_leaves_no_result_folder(tmp_path):
    with pytest.raises(RuntimeError):
        run_samples(EchoBackend(fail_on_call=3), tagged_samples(LENGTHS), tmp_path / "result", batch_size=3,
                    output_dirname="r", warmup_count=0, show_progress=False)
    assert not (tmp_path / "result" / "r").exists()
    assert not (tmp_path / "result" / "r_summary.json").exists()


def test_a_static_sequence_model_is_refused_for_dynamic_length(tmp_path):
    backend = EchoBackend()
    backend.seq_len = 16
    with pytest.raises(UsageError, match="export --dynamic"):
        run_samples(backend, tagged_samples(LENGTHS), tmp_path / "result", batch_size=3, show_progress=False)
    assert not (tmp_path / "result").exists() or not any((tmp_path / "result").iterdir())


# ---------------------------------------------------------------- real models: same predictions as the static path
@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_exports):
    """The static (bs 4) and dynamic exports of the tiny checkpoint, its TSV and bert_bin, in this module's folder."""
    from conftest import copy_exports

    m = copy_exports(tiny_exports, tmp_path_factory.mktemp("dynamic_models"))
    return {"work": m["dir"], "tsv": m["tsv"], "bin": m["bin"], "static": m["static"], "dynamic": m["dynamic"]}


def test_dynamic_export_keeps_symbolic_axes_and_matches_pytorch(models, tiny_checkpoint):
    import onnx
    import onnxruntime as ort
    import torch

    from tinybert_infer.models.checkpoint import load_model

    report = models["dynamic"]
    assert report.onnx_path.name == "TinyBERT_dyn.onnx" and report.sim_path.name == "TinyBERT_sim_dyn.onnx"
    assert report.max_abs_diff <= 1e-4 and report.max_abs_diff_sim <= 1e-4
    for path in (report.onnx_path, report.sim_path):
        graph = onnx.load(str(path)).graph
        assert [i.name for i in graph.input] == list(INPUT_NAMES)
        for value in graph.input:
            assert [d.dim_param for d in value.type.tensor_type.shape.dim] == ["batch", "sequence"]
    # Independently of the export's own check: other lengths and batch sizes than it validated with.
    _, model = load_model(tiny_checkpoint)
    session = ort.InferenceSession(str(report.sim_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for batch, length in ((1, 2), (5, 11), (2, 64), (7, 40)):
        lengths = rng.integers(1, length + 1, batch)
        mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
        feeds = {"input_ids": rng.integers(0, 200, (batch, length)) * mask, "segment_ids": np.zeros_like(mask),
                 "input_mask": mask}
        with torch.inference_mode():
            expected = model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES)).numpy()
        assert np.max(np.abs(session.run(None, feeds)[0] - expected)) <= 1e-4


def test_tsv_samples_equal_the_preprocessed_files(models, tiny_checkpoint):
    from_tsv = read_tsv_samples(models["tsv"], tiny_checkpoint / "vocab.txt")
    from_files = read_sample_files([models["bin"] / n for n in INPUT_NAMES])
    for name in INPUT_NAMES:
        np.testing.assert_array_equal(from_tsv.feats[name], from_files.feats[name])
    np.testing.assert_array_equal(from_tsv.lengths, from_files.lengths)
    assert from_tsv.lengths.max() == 64  # the long sentence is truncated like preprocessing does


def _scored(result_dir, bin_dir):
    from tinybert_infer.eval.metrics import evaluate

    return evaluate(result_dir, bin_dir, write=False)


@pytest.mark.parametrize("backend_name", ["onnxruntime", "torch"])
def test_dynamic_length_predicts_exactly_what_the_static_path_does(models, tiny_checkpoint, tmp_path, backend_name):
    from tinybert_infer.backends import make_backend
    from tinybert_infer.run.inference import run_files

    dirs = [models["bin"] / n for n in INPUT_NAMES]
    static = make_backend(backend_name, onnx_path=models["static"].sim_path, checkpoint_dir=tiny_checkpoint,
                          batch_size=4)
    dynamic = make_backend(backend_name, onnx_path=models["dynamic"].sim_path, checkpoint_dir=tiny_checkpoint)
    common = dict(batch_size=4, outfmt="BIN", show_progress=False)
    reference = _scored(run_files(static, dirs, tmp_path, output_dirname="static", **common).result_dir, models["bin"])
    runs = {
        "longest": run_files_by_length(dynamic, dirs, tmp_path, output_dirname="dyn", **common),
        "multiple": run_files_by_length(dynamic, dirs, tmp_path, output_dirname="dyn8", pad_multiple=8, **common),
        "buckets": run_files_by_length(dynamic, dirs, tmp_path, output_dirname="dynb", buckets=(8, 16), **common),
        "tsv": run_tsv(dynamic, models["tsv"], tiny_checkpoint / "vocab.txt", tmp_path, output_dirname="tsv",
                       **common),
    }
    for name, report in runs.items():
        got = _scored(report.result_dir, models["bin"])
        np.testing.assert_array_equal(got.predictions, reference.predictions, err_msg=name)
        assert np.max(np.abs(got.logits - reference.logits)) <= 1e-4, name
        assert got.metrics["accuracy"] == reference.metrics["accuracy"]
        assert report.summary["padded_tokens"] < report.summary["static_tokens"]


# ---------------------------------------------------------------- command line
def test_cli_export_dynamic_then_infer_from_a_tsv_then_postprocess(tmp_path, tiny_checkpoint, models):
    from conftest import write_tsv

    write_tsv(tmp_path / "glue_dir" / "SST-2" / "dev.tsv")
    env = {"TINYBERT_MODEL_DIR": str(tiny_checkpoint)}
    run_cli_in_process("export", "--dynamic", cwd=tmp_path, env=env, check=True)
    assert (tmp_path / "TinyBERT_sim_dyn.onnx").is_file() and (tmp_path / "TinyBERT_dyn.onnx").is_file()
    run_cli_in_process("preprocess", cwd=tmp_path, env=env, check=True)
    proc = run_cli_in_process("infer", "--dynamic_length", "--buckets", "8,16,32", "--batchsize", "4", "--tsv",
                              "glue_dir/SST-2/dev.tsv", "--backend", "onnxruntime", "--output", "result",
                              "--outfmt", "TXT", "--output_dirname", "dyn", cwd=tmp_path, env=env, check=True)
    assert "mode: dynamic_length (buckets 8,16,32)" in proc.stdout
    assert "result folder: dyn" in proc.stdout
    summary = json.loads((tmp_path / "result" / "dyn_summary.json").read_text())
    assert summary["buckets"] == [8, 16, 32] and summary["real_tokens"] < summary["padded_tokens"]
    post = run_cli_in_process("postprocess", "--result_dir", "result/dyn", cwd=tmp_path, env=env, check=True)
    expected = _scored(tmp_path / "result" / "dyn", tmp_path / "bert_bin").metrics["accuracy"]
    assert post.stdout.splitlines()[0] == f"acc:{expected:.4f}"


@pytest.mark.parametrize("args, message", [
    (["--dynamic_length", "--pad_multiple", "8", "--buckets", "16"], "not allowed with"),
    (["--pad_multiple", "8"], "need --dynamic_length"),
    (["--dynamic_length", "--buckets", "32,16"], "strictly increasing"),
    (["--dynamic_length", "--model", "TinyBERT_sim_bs4.onnx"], "static sequence length 64"),
])
def test_cli_usage_errors_are_one_line_and_write_nothing(tmp_path, models, tiny_checkpoint, args, message):
    import shutil

    shutil.copy(models["static"].sim_path, tmp_path / "TinyBERT_sim_bs4.onnx")
    proc = run_cli_in_process("infer", "--batchsize", "4", "--tsv", str(models["tsv"]), "--backend", "onnxruntime",
                              "--output", "result", *args, cwd=tmp_path,
                              env={"TINYBERT_MODEL_DIR": str(tiny_checkpoint)})
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "result").exists() or not any((tmp_path / "result").iterdir())


# ---------------------------------------------------------------- the side-by-side measurement's row
def test_bench_row_checks_parity_through_the_pipeline(models, tiny_checkpoint, tmp_path):
    from tinybert_infer.bench.dynamic import compare_batch
    from tinybert_infer.bench.report import dynamic_rows_table

    row = compare_batch("onnxruntime", 4, bin_dir=models["bin"], static_model=models["static"].sim_path,
                        dynamic_model=models["dynamic"].sim_path, checkpoint_dir=tiny_checkpoint,
                        out_root=tmp_path, repeats=1)
    assert row["parity"] and row["labels_equal"] and row["samples"] == 13
    assert row["token_reduction"] > 1 and row["static_tokens"] == 16 * 64
    assert "| onnxruntime | 4 |" in dynamic_rows_table([row])


def test_benchmark_section_rows_and_markdown(models, tiny_checkpoint, tmp_path):
    from tinybert_infer.bench.dynamic import dynamic_length_section
    from tinybert_infer.bench.report import dynamic_section_lines

    section = dynamic_length_section(["torch", "onnxruntime", "onnxruntime-int8-dynamic"], model_dir=tiny_checkpoint,
                                     tsv=models["tsv"], work=tmp_path, batch_sizes=[8], repeats=1)
    assert [(r["backend"], r["batch"]) for r in section["rows"]] == [("onnxruntime", 8)]
    assert section["rows"][0]["parity"] and section["target"]["per_bs"].keys() == {"onnxruntime bs8"}
    md = "\n".join(dynamic_section_lines(section))
    assert "## Dynamic length" in md and "| onnxruntime | 8 |" in md and "Target: dynamic length >= 2x" in md
    missing = dynamic_length_section(["onnxruntime"], model_dir=tmp_path / "none", tsv=models["tsv"], work=tmp_path,
                                     batch_sizes=[8])
    assert "skipped" in missing and "Skipped" in "\n".join(dynamic_section_lines(missing))


# ---------------------------------------------------------------- OpenVINO streams: several batches in flight
def test_openvino_streams_keep_order_and_numbers(models):
    from tinybert_infer.backends.openvino import OpenVinoBackend

    one = OpenVinoBackend(models["dynamic"].sim_path, threads=2)
    two = OpenVinoBackend(models["dynamic"].sim_path, threads=2, streams=2)
    rng = np.random.default_rng(0)
    batches = []
    for tag, (batch, width) in enumerate([(3, 5), (1, 17), (4, 9), (2, 64), (3, 1), (4, 33), (1, 2)]):
        ids = rng.integers(1, 200, (batch, width))
        batches.append(({"input_ids": ids, "segment_ids": np.zeros_like(ids), "input_mask": np.ones_like(ids)}, tag))
    got = list(two.run_pipelined(iter(batches)))
    assert [tag for tag, _, _ in got] == list(range(len(batches)))
    for (feeds, _), (_, logits, ms) in zip(batches, got):
        np.testing.assert_allclose(logits, one.run(feeds), atol=1e-5)
        assert logits.shape[0] == feeds["input_ids"].shape[0] and ms > 0
    assert two.describe()["streams"] == 2 and one.describe()["streams"] == 1


@pytest.mark.parametrize("static_shapes", [False, True])
def test_openvino_keeps_a_batch_queued_behind_each_running_one(models, static_shapes):
    """A stream that finishes must find its next batch already submitted, not wait for the Python thread (busy
    writing result files): with 2 streams, 2 x REQUESTS_PER_STREAM batches are in OpenVINO's hands before the
    first result is handed out, and the next is started before it is."""
    from tinybert_infer.backends.openvino import REQUESTS_PER_STREAM, OpenVinoBackend, OpenVinoStaticShapes

    path = models["dynamic"].sim_path
    backend = (OpenVinoStaticShapes(path, batch_size=2, threads=2, streams=2) if static_shapes
               else OpenVinoBackend(path, threads=2, streams=2))
    ids = np.arange(1, 17).reshape(2, 8)
    feeds = {"input_ids": ids, "segment_ids": np.zeros_like(ids), "input_mask": np.ones_like(ids)}
    taken = []

    def items():
        for tag in range(8):
            taken.append(tag)
            yield feeds, tag

    first = next(iter(backend.run_pipelined(items())))
    assert REQUESTS_PER_STREAM >= 2 and first[0] == 0 and len(taken) == 2 * REQUESTS_PER_STREAM + 1


def test_openvino_streams_give_the_same_result_folder_as_one_stream(models, tmp_path):
    from tinybert_infer.backends import make_backend
    from tinybert_infer.run.inference import run_files

    dirs = [models["bin"] / n for n in INPUT_NAMES]
    common = dict(batch_size=4, outfmt="BIN", show_progress=False)
    folders = {}
    for streams in (1, 2):
        static = make_backend("openvino", onnx_path=models["static"].sim_path, threads=2, streams=streams)
        dynamic = make_backend("openvino", onnx_path=models["dynamic"].sim_path, threads=2, streams=streams)
        folders[f"static{streams}"] = run_files(static, dirs, tmp_path, output_dirname=f"s{streams}", **common)
        folders[f"dyn{streams}"] = run_files_by_length(dynamic, dirs, tmp_path, output_dirname=f"d{streams}", **common)
    scored = {k: _scored(v.result_dir, models["bin"]) for k, v in folders.items()}
    for name, got in scored.items():
        np.testing.assert_array_equal(got.predictions, scored["static1"].predictions, err_msg=name)
        assert np.max(np.abs(got.logits - scored["static1"].logits)) <= 1e-4, name
    assert folders["dyn2"].summary["backend"]["streams"] == 2
    assert len(folders["dyn2"].summary["npu_compute_time_list"]) == folders["dyn2"].summary["batches"]


def test_streams_defaults_and_errors():
    from tinybert_infer.backends import make_backend
    from tinybert_infer.backends.openvino import OpenVinoBackend
    from tinybert_infer.run.length import default_streams

    assert default_streams("openvino", 2, True) == 2 and default_streams("openvino", 1, True) == 1
    assert default_streams("openvino", 2, False) == 1 and default_streams("onnxruntime", 2, True) == 1
    with pytest.raises(UsageError, match="--streams 2"):
        make_backend("onnxruntime", onnx_path="x.onnx", streams=2)
    with pytest.raises(UsageError, match="--streams 3"):
        OpenVinoBackend("x.onnx", threads=2, streams=3)


def test_cli_dynamic_length_on_openvino_runs_two_streams_by_default(tmp_path, models, tiny_checkpoint):
    import shutil

    shutil.copy(models["dynamic"].sim_path, tmp_path / "TinyBERT_sim_dyn.onnx")
    env = {"TINYBERT_MODEL_DIR": str(tiny_checkpoint)}
    proc = run_cli_in_process("infer", "--dynamic_length", "--batchsize", "4", "--tsv", str(models["tsv"]),
                              "--backend", "openvino", "--threads", "2", "--output", "result", "--output_dirname", "ov",
                              cwd=tmp_path, env=env, check=True)
    summary = json.loads((tmp_path / "result" / "ov_summary.json").read_text())
    assert summary["backend"]["streams"] == 2 and summary["mode"] == "dynamic_length", proc.stdout
    bad = run_cli_in_process("infer", "--dynamic_length", "--batchsize", "4", "--tsv", str(models["tsv"]), "--backend",
                             "onnxruntime", "--streams", "2", "--output", "result", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "--streams 2" in bad.stderr and "Traceback" not in bad.stderr
