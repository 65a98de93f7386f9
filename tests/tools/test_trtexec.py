"""GPU throughput: bash test/trt_perf.sh BS picks trtexec flags for the installed TensorRT and parses its summary.

Checked against the stand-in trtexec (tests/stubs/bin/trtexec): TRTEXEC_STUB_VERSION selects the release it
imitates, with that release's option set (it rejects --workspace from 10.0, --fp16 from 11.0, --shapes on a
static model from 8.0) and performance-summary format.
"""

import json
import shlex
import subprocess

import pytest

from conftest import run_cli_in_process
from accel_support import BS, STUB_BIN, accel_base, error_lines, recorded, script, tool_env, workdir  # noqa: F401
from tinybert_infer.tools.atc import OnnxInfo, OnnxInput
from tinybert_infer.errors import UsageError
from tinybert_infer.tools.trtexec import build_trtexec_command, parse_summary, parse_version

ONNX = f"--onnx=TinyBERT_sim_bs{BS}.onnx"
MODERN = [ONNX, "--memPoolSize=workspace:5000", "--threads"]
OLD = [ONNX, "--workspace=5000", "--threads"]


def trt_perf(bs, *args, cwd, env):
    """What `bash test/trt_perf.sh BS ARGS` runs (trt-perf --batch_size BS ARGS), in this process, the stand-in
    trtexec on PATH all the same; the script itself: the absent-tool and dry-run tests, test_scripts_args."""
    return run_cli_in_process("trt-perf", "--batch_size", bs, *args, cwd=cwd, env=env)


@pytest.mark.parametrize("version, expected", [
    ("7.2.1", OLD), ("8.2.1", OLD), ("8.6.1", MODERN), ("10.8.0", MODERN), ("11.0.0", MODERN),
])
def test_flags_follow_the_installed_tensorrt_and_fps_is_parsed(workdir, tmp_path, version, expected):
    env = tool_env(tmp_path, TRTEXEC_STUB_VERSION=version, TRTEXEC_STUB_GPU_MEAN_MS="0.8", TRTEXEC_STUB_QPS="1100")
    proc = trt_perf(BS, "--json", tmp_path / "perf.json", cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recorded(tmp_path, "trtexec") == [["--help"], expected]  # probe, then the measured run
    assert "fps (1000*BS/mean GPU compute time, ModelZoo): 5000.00  [GPU Compute Time mean = 0.8 ms]" in proc.stdout
    assert "qps*BS (host walltime throughput): 4400.00  [Throughput = 1100 qps]" in proc.stdout
    result = json.loads((tmp_path / "perf.json").read_text())
    assert result["fps"] == pytest.approx(5000.0) and result["qps_x_bs"] == pytest.approx(4400.0)
    assert result["summary_format"] == ("trt7" if version.startswith("7") else "trt8+")
    assert result["tensorrt"] == (None if version.startswith("7") else version)


def test_fp16_where_accepted(workdir, tmp_path):
    proc = trt_perf(BS, "--fp16", cwd=workdir, env=tool_env(tmp_path, TRTEXEC_STUB_VERSION="10.8.0"))
    assert proc.returncode == 0, proc.stderr
    assert recorded(tmp_path, "trtexec")[-1] == MODERN + ["--fp16"]
    assert "TensorRT 10.8.0, bs 4, fp16" in proc.stdout


def test_fp16_refused_on_tensorrt_11_before_running(workdir, tmp_path):
    proc = trt_perf(BS, "--fp16", cwd=workdir, env=tool_env(tmp_path, TRTEXEC_STUB_VERSION="11.0.0"))
    assert proc.returncode == 2
    [error] = error_lines(proc)
    assert "TensorRT 11.0.0 has no --fp16" in error
    assert recorded(tmp_path, "trtexec") == [["--help"]]


@pytest.mark.parametrize("version, args, message", [
    ("10.8.0", [ONNX, "--workspace=5000"], "Unknown option: --workspace=5000"),
    ("11.0.0", [ONNX, "--fp16"], "Unknown option: --fp16"),
    ("8.6.1", [ONNX, "--shapes=input_ids:4x64,segment_ids:4x64,input_mask:4x64"],
     "Static model does not take explicit shapes"),
])
def test_stand_in_rejects_what_that_release_rejects(workdir, tmp_path, version, args, message):
    # The flag choice above only matters because these fail on the real tool; the stand-in mirrors that.
    proc = subprocess.run([str(STUB_BIN / "trtexec"), *args], cwd=workdir, capture_output=True, text=True,
                          env=tool_env(tmp_path, TRTEXEC_STUB_VERSION=version))
    assert proc.returncode == 1 and message in proc.stdout and "&&&& FAILED" in proc.stdout


def test_a_failing_trtexec_run_reports_its_error_lines(workdir, tmp_path):
    # A wrong --trt_version makes us pass --workspace to TensorRT 10, which fails like the real one.
    env = tool_env(tmp_path, TRTEXEC_STUB_VERSION="10.8.0")
    proc = trt_perf(BS, "--trt_version", "8.2", cwd=workdir, env=env)
    assert proc.returncode == 7
    assert "[trtexec failure]" in proc.stderr and "Unknown option: --workspace=5000" in proc.stderr
    [error] = error_lines(proc)
    assert error.startswith("error: trtexec failed (exit 1)")


def test_absent_trtexec_is_one_clear_line(workdir, tmp_path):
    proc = script("trt_perf.sh", BS, cwd=workdir, env=tool_env(tmp_path, stubs_on_path=False))
    assert proc.returncode == 7
    assert proc.stderr.strip().splitlines() == error_lines(proc)
    assert "trtexec not found on PATH" in proc.stderr


def test_dry_run_prints_the_command_anywhere(workdir, tmp_path):
    proc = script("trt_perf.sh", BS, "--dry-run", cwd=workdir, env=tool_env(tmp_path, stubs_on_path=False))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == shlex.join(["trtexec", *MODERN])
    old = script("trt_perf.sh", BS, "--dry-run", "--trt_version", "8.2", cwd=workdir,
                 env=tool_env(tmp_path, stubs_on_path=False))
    assert old.stdout.strip() == shlex.join(["trtexec", *OLD])


def test_batch_must_match_the_onnx(workdir, tmp_path):
    proc = trt_perf(8, "--model", f"TinyBERT_sim_bs{BS}.onnx", cwd=workdir, env=tool_env(tmp_path))
    assert proc.returncode == 2 and "batch 4, but BS is 8" in proc.stderr


def test_shapes_only_for_a_dynamic_model():
    dims = lambda *d: [OnnxInput(n, list(d), "INT64") for n in ("input_ids", "segment_ids", "input_mask")]
    static = OnnxInfo(None, 11, dims(4, 64))
    dynamic = OnnxInfo(None, 11, dims(None, None))
    assert not any(a.startswith("--shapes") for a in build_trtexec_command("m.onnx", static, 4, (8, 6, 1), ""))
    argv = build_trtexec_command("m.onnx", dynamic, 4, (8, 6, 1), "")
    assert "--shapes=input_ids:4x64,segment_ids:4x64,input_mask:4x64" in argv


def test_unknown_version_chooses_flags_from_the_help_text():
    info = OnnxInfo(None, 11, [OnnxInput("input_ids", [4, 64], "INT64")])
    old_help = "  --workspace=N   Set workspace size in MiB.\n  --fp16  Enable fp16\n"
    new_help = "  --memPoolSize=poolspec  Specify the size constraints\n"
    assert build_trtexec_command("m.onnx", info, 4, None, old_help)[2] == "--workspace=5000"
    assert build_trtexec_command("m.onnx", info, 4, None, new_help)[2] == "--memPoolSize=workspace:5000"
    with pytest.raises(UsageError):
        build_trtexec_command("m.onnx", info, 4, None, new_help, fp16=True)


@pytest.mark.parametrize("text, version", [
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --help", (8, 6, 1)),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8205] # trtexec", (8, 2, 5)),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v100800] # trtexec", (10, 8, 0)),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v110000] # trtexec", (11, 0, 0)),
    ("[06/10/2023-10:00:00] [I] TensorRT version: 10.3.0", (10, 3, 0)),
    ("&&&& RUNNING TensorRT.trtexec # /usr/src/tensorrt/bin/trtexec --help", None),  # TRT 7: no tag
])
def test_version_detection(text, version):
    assert parse_version(text) == version


TRT82 = """\
[05/01/2022-10:00:00] [I] === Performance summary ===
[05/01/2022-10:00:00] [I] Throughput: 1234.5 qps
[05/01/2022-10:00:00] [I] Latency: min = 0.9 ms, max = 1.5 ms, mean = 1.0 ms, median = 0.99 ms, percentile(99%) = 1.4 ms
[05/01/2022-10:00:00] [I] End-to-End Host Latency: min = 1.2 ms, max = 2.0 ms, mean = 1.4 ms, median = 1.3 ms, percentile(99%) = 1.9 ms
[05/01/2022-10:00:00] [I] Enqueue Time: min = 0.1 ms, max = 0.2 ms, mean = 0.1 ms, median = 0.1 ms, percentile(99%) = 0.2 ms
[05/01/2022-10:00:00] [I] H2D Latency: min = 0.01 ms, max = 0.02 ms, mean = 0.01 ms, median = 0.01 ms, percentile(99%) = 0.02 ms
[05/01/2022-10:00:00] [I] GPU Compute Time: min = 0.7 ms, max = 1.3 ms, mean = 0.8 ms, median = 0.79 ms, percentile(99%) = 1.2 ms
[05/01/2022-10:00:00] [I] D2H Latency: min = 0.01 ms, max = 0.02 ms, mean = 0.01 ms, median = 0.01 ms, percentile(99%) = 0.02 ms
[05/01/2022-10:00:00] [I] Total Host Walltime: 3.0 s
[05/01/2022-10:00:00] [I] Total GPU Compute Time: 2.4 s
[05/01/2022-10:00:00] [I] Explanations of the performance metrics are printed in the verbose logs.
&&&& PASSED TensorRT.trtexec [TensorRT v8201] # trtexec --onnx=m.onnx --workspace=5000
"""

# TRT 7's multi-line epilog (public trtexec 7.x log).
TRT7 = """\
[01/12/2021-17:36:31] [I] Host Latency
[01/12/2021-17:36:31] [I] min: 55.1414 ms (end to end 55.1486 ms)
[01/12/2021-17:36:31] [I] mean: 55.3094 ms (end to end 55.3221 ms)
[01/12/2021-17:36:31] [I] percentile: 57.542 ms at 99% (end to end 57.561 ms at 99%)
[01/12/2021-17:36:31] [I] throughput: 18.0758 qps
[01/12/2021-17:36:31] [I] walltime: 3.09807 s
[01/12/2021-17:36:31] [I] Enqueue Time
[01/12/2021-17:36:31] [I] min: 3.87885 ms
[01/12/2021-17:36:31] [I] GPU Compute
[01/12/2021-17:36:31] [I] min: 55.0791 ms
[01/12/2021-17:36:31] [I] max: 57.4766 ms
[01/12/2021-17:36:31] [I] mean: 55.2468 ms
[01/12/2021-17:36:31] [I] median: 55.2111 ms
[01/12/2021-17:36:31] [I] percentile: 57.4766 ms at 99%
[01/12/2021-17:36:31] [I] total compute time: 3.09382 s
&&&& PASSED TensorRT.trtexec # /usr/src/tensorrt/bin/trtexec --deploy=resnet-50.prototxt --batch=1
"""


def test_summary_parsing_trt8_single_percentile_format():
    summary = parse_summary(TRT82)
    assert summary.summary_format == "trt8+"
    assert summary.gpu_compute_ms == {"min": 0.7, "max": 1.3, "mean": 0.8, "median": 0.79, "percentile(99%)": 1.2}
    assert summary.throughput_qps == 1234.5
    assert summary.fps(8) == pytest.approx(10000.0)


def test_summary_parsing_trt7_format():
    summary = parse_summary(TRT7)
    assert summary.summary_format == "trt7"
    assert summary.gpu_compute_ms == {"min": 55.0791, "max": 57.4766, "mean": 55.2468, "median": 55.2111,
                                      "percentile(99%)": 57.4766}
    assert summary.throughput_qps == 18.0758
    assert summary.fps(1) == pytest.approx(1000 / 55.2468)


def test_no_summary_is_none():
    assert parse_summary("&&&& FAILED TensorRT.trtexec [TensorRT v8601] # trtexec --onnx=x\n") is None
