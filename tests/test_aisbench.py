"""Stage 4 on Ascend: bash test/ais_inference.sh BS runs the real ais_bench when it and the OM are present.

Checked against the stand-in ais_bench package (tests/stubs/python/ais_bench, run as python -m ais_bench),
which records its argv, batches and pads like ais_bench 0.0.2, and computes the logits for real from the
ONNX inside the stand-in OM, so postprocessing its output must give the CPU path's accuracy.
"""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import SHARED
from accel_support import (BS, STUB_PYTHON, accel_base, cli, error_lines, fake_cann_toolkit,  # noqa: F401
                           recorded, script, tool_env, workdir)
from tinybert_infer.aisbench import throughput_from_output

INPUTS = "bert_bin/input_ids,bert_bin/segment_ids,bert_bin/input_mask"
EXPECTED_ARGV = ["--model", f"TinyBERT_bs{BS}.om", "--input", INPUTS, "--output", "result", "--outfmt", "TXT",
                 "--batchsize", str(BS)]
SAMPLES = 13  # the tiny TSV; with BS 4 the last batch holds 1 sample and 3 padding copies


def make_om(workdir):
    # What the stand-in atc writes: the ONNX itself under the OM name.
    shutil.copy(workdir / f"TinyBERT_sim_bs{BS}.onnx", workdir / f"TinyBERT_bs{BS}.om")


def reported_folder(stdout):
    [name] = re.findall(r"^result folder: (\S+)$", stdout, re.M)
    return name


def accuracy_line(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("acc:")]
    return line


def test_real_ais_bench_path_runs_the_exact_command_and_scores_like_the_cpu_path(workdir, tmp_path):
    make_om(workdir)
    env = tool_env(tmp_path)
    npu = script("ais_inference.sh", BS, cwd=workdir, env=env)
    assert npu.returncode == 0, npu.stdout + npu.stderr
    assert f"[path] ais_bench on the NPU (real tool): TinyBERT_bs{BS}.om" in npu.stdout
    assert recorded(tmp_path, "ais_bench") == [EXPECTED_ARGV]
    folder = reported_folder(npu.stdout)
    assert re.fullmatch(r"\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d", folder)
    assert f"[path] ais_bench created result/{folder}" in npu.stdout
    result = workdir / "result" / folder
    assert sorted(p.name for p in result.iterdir()) == sorted(f"input{i}_0.txt" for i in range(SAMPLES))
    summary = json.loads((workdir / "result" / f"{folder}_summary.json").read_text())
    assert len(summary["filesinfo"]) == SAMPLES  # padding slots have no entry
    [shown] = re.findall(r"throughput: ([0-9.]+) samples/s", npu.stdout)
    assert float(shown) == pytest.approx(summary["throughput"], abs=0.006)

    cpu = script("ais_inference.sh", BS, cwd=workdir, env=tool_env(tmp_path, ais_bench=False))
    assert "[path] host backend" in cpu.stdout
    cpu_folder = reported_folder(cpu.stdout)

    npu_acc = accuracy_line(script("postprocess_data.sh", folder, cwd=workdir, env=env))
    cpu_acc = accuracy_line(script("postprocess_data.sh", cpu_folder, cwd=workdir, env=env))
    assert npu_acc == cpu_acc
    for i in range(SAMPLES):
        a = np.loadtxt(result / f"input{i}_0.txt")
        b = np.loadtxt(workdir / "result" / cpu_folder / f"input{i}_0.txt")
        assert np.allclose(a, b, atol=2e-6), i


def test_without_the_om_the_host_backend_runs(workdir, tmp_path):
    proc = script("ais_inference.sh", BS, cwd=workdir, env=tool_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "[path] host backend (no ais_bench/OM used)" in proc.stdout
    assert recorded(tmp_path, "ais_bench") == []


def test_a_named_backend_keeps_the_host_path(workdir, tmp_path):
    make_om(workdir)
    proc = script("ais_inference.sh", BS, "--backend", "onnxruntime", cwd=workdir, env=tool_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "[path] host backend" in proc.stdout
    assert recorded(tmp_path, "ais_bench") == []


def test_cann_environment_is_sourced_before_ais_bench(workdir, tmp_path):
    # ais_bench is importable only with the toolkit's environment, as with CANN's own Python packages.
    make_om(workdir)
    home = fake_cann_toolkit(tmp_path, f'export PYTHONPATH="{STUB_PYTHON}:$PYTHONPATH"')
    env = tool_env(tmp_path, ais_bench=False, ASCEND_TOOLKIT_HOME=home)
    proc = script("ais_inference.sh", BS, cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"[cann] source {home}/set_env.sh" in proc.stdout
    assert recorded(tmp_path, "ais_bench") == [EXPECTED_ARGV]


def test_options_pass_through_and_an_existing_output_dirname_is_refused(workdir, tmp_path):
    make_om(workdir)
    env = tool_env(tmp_path)
    proc = script("ais_inference.sh", BS, "--output_dirname", "bs4", cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stderr
    assert recorded(tmp_path, "ais_bench") == [EXPECTED_ARGV + ["--output_dirname", "bs4"]]
    assert reported_folder(proc.stdout) == "bs4"
    again = script("ais_inference.sh", BS, "--output_dirname", "bs4", cwd=workdir, env=env)
    assert again.returncode == 5
    assert "already exists" in error_lines(again)[0]
    assert len(recorded(tmp_path, "ais_bench")) == 1  # ais_bench would have overwritten it: not called


def test_a_failing_ais_bench_exits_non_zero_with_its_error(workdir, tmp_path):
    make_om(workdir)
    proc = script("ais_inference.sh", BS, cwd=workdir, env=tool_env(tmp_path, AIS_BENCH_STUB_FAIL=1))
    assert proc.returncode == 7
    [error] = error_lines(proc)
    assert error.startswith("error: ais_bench failed (exit 1)") and "acl init failed" in error


def test_ais_infer_without_the_tool_is_one_clear_line(workdir, tmp_path):
    make_om(workdir)
    proc = cli("ais-infer", "--batchsize", BS, cwd=workdir, env=tool_env(tmp_path, ais_bench=False))
    assert proc.returncode == 7
    assert proc.stderr.strip().splitlines() == error_lines(proc)
    assert "ais_bench is not importable" in proc.stderr


def test_performance_run_on_the_npu_path_and_on_the_cpu(workdir, tmp_path):
    make_om(workdir)
    npu = script("ais_perf.sh", BS, 20, cwd=workdir, env=tool_env(tmp_path))
    assert npu.returncode == 0, npu.stderr
    assert "[path] ais_bench pure inference on the NPU" in npu.stdout
    assert recorded(tmp_path, "ais_bench") == [["--model", f"TinyBERT_bs{BS}.om", "--loop", "20", "--batchsize", str(BS)]]
    assert float(re.search(r"throughput: ([0-9.]+) samples/s", npu.stdout).group(1)) > 0
    assert not (workdir / "result").exists()  # pure inference saves nothing

    cpu = script("ais_perf.sh", BS, 5, "--pure_data_type", "random", cwd=workdir,
                 env=tool_env(tmp_path, ais_bench=False))
    assert cpu.returncode == 0, cpu.stderr
    assert "[path] host backend pure inference" in cpu.stdout
    assert float(cpu.stdout.strip().splitlines()[-2].split()[-1]) > 0  # ais_bench's throughput line


def test_stand_in_rejects_options_ais_bench_0_0_2_does_not_have(tmp_path):
    # The contract above is only meaningful if the stand-in is as strict as the real argparse.
    env = tool_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "ais_bench", "--model", "x.om", "--infer_queue_count", "20"],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "unrecognized arguments: --infer_queue_count" in proc.stderr


@pytest.mark.parametrize("line, value", [
    ("[INFO] throughput 1000*batchsize.mean(4)/NPU_compute_time.mean(0.661): 6051.43", 6051.43),
    ("[INFO] throughput 1000*batchsize(4)/NPU_compute_time.mean(0.661): 6051.43", 6051.43),  # Sep-Nov 2022
    ("[INFO] throughput (1000*batchsize/NPU_compute_time): 1512.8592735267011", 1512.8592735267011),  # Jun 2022
])
def test_throughput_is_read_from_every_printed_wording(line, value):
    assert throughput_from_output(f"[INFO] output path:result/x\n{line}\n[INFO] ----\n") == value


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "SST-2_model").is_dir(), reason="../shared not present")
def test_shared_model_through_stand_in_atc_and_ais_bench_matches_pytorch(tmp_path):
    """The whole Ascend flow (run_all.sh with CHIP) on the real checkpoint, bs 16 (padded last batch)."""
    oracle = json.loads((SHARED / "reference" / "sst2_dev_reference_predictions.json").read_text())
    env = tool_env(tmp_path, TINYBERT_MODEL_DIR=SHARED / "SST-2_model", TINYBERT_DATA_DIR=SHARED / "glue_dir" / "SST-2")
    proc = script("run_all.sh", 16, "310P3", cwd=tmp_path, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[atc] OM: TinyBERT_bs16.om" in proc.stdout
    assert "[path] ais_bench on the NPU" in proc.stdout
    assert f"acc:{oracle['accuracy']:.4f}" in proc.stdout
    folder = tmp_path / "result" / reported_folder(proc.stdout)
    preds = [int(np.argmax(np.loadtxt(folder / f"input{i}_0.txt"))) for i in range(oracle["n"])]
    assert preds == oracle["preds"]
