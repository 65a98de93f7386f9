"""The shell entry points: argument checks (usage + exit 2, nothing run) and stopping at the first failing
command with its exit status (issue 5). A stand-in $PYTHON records each call and fails where told, so these
tests check the scripts' own control flow in milliseconds."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import ROOT, run_script

FAKE_PYTHON = r"""#!/usr/bin/env bash
# Stand-in interpreter: log the call, name its stage, exit with $FAIL_<stage> (default 0).
echo "$*" >> "$FAKE_LOG"
stage=other
for a in "$@"; do
    case "$a" in
        *TinyBERT_pth2onnx.py) stage=export ;;
        *TinyBERT_preprocess.py) stage=preprocess ;;
        *TinyBERT_postprocess.py) stage=postprocess ;;
        infer|om|trt-perf|ais-infer|ais-perf) stage="${a//-/_}" ;;
    esac
done
var="FAIL_$stage"
code="${!var:-0}"
if [ "$code" = 0 ]; then
    [ "$stage" = infer ] && echo "result folder: 2024_01_01-00_00_00" && echo "[INFO] throughput x: 12.5"
    [ "$stage" = postprocess ] && echo "acc:0.5000"
else
    echo "error: $stage failed (stand-in)" >&2
fi
exit "$code"
"""


@pytest.fixture()
def fake(tmp_path):
    """(env, log path): $PYTHON is the stand-in; the log lists each call's arguments."""
    python = tmp_path / "fake_python"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    log.write_text("")
    work = tmp_path / "work"
    work.mkdir()
    return {"PYTHON": str(python), "FAKE_LOG": str(log), "TINYBERT_BACKEND": ""}, log, work


def _calls(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line]


def _stages(log: Path) -> list[str]:
    names = {"TinyBERT_pth2onnx.py": "export", "TinyBERT_preprocess.py": "preprocess", " infer ": "infer",
             "TinyBERT_postprocess.py": "postprocess"}
    return [next((v for k, v in names.items() if k in f" {c} "), "other") for c in _calls(log)]


def _existing(*scripts):
    return [s for s in scripts if (ROOT / "test" / s).is_file()]


BS_SCRIPTS = _existing("pth2onnx.sh", "ais_inference.sh", "run_all.sh", "onnx2om.sh", "ais_perf.sh", "trt_perf.sh")
BAD_BS = ["", "0", "-1", "abc", "1.5", "08x", "1 2", "99999999", "$(touch pwned)"]


@pytest.mark.parametrize("script", BS_SCRIPTS)
@pytest.mark.parametrize("bs", BAD_BS, ids=[repr(b) for b in BAD_BS])
def test_bad_bs_prints_usage_and_exits_2(script, bs, fake):
    env, log, work = fake
    args = [bs, "310P3"] if script == "onnx2om.sh" else [bs]
    proc = run_script(script, *args, cwd=work, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"usage: bash test/{script} ")
    assert "error: BS must be a positive integer" in proc.stderr
    assert _calls(log) == [] and list(work.iterdir()) == []


CHIP_SCRIPTS = _existing("onnx2om.sh", "run_all.sh")
BAD_CHIP = ["310P3;touch pwned", "310 P3", "../310P3", "310P3/", "-310", "Ascend-310"]


@pytest.mark.parametrize("script", CHIP_SCRIPTS)
@pytest.mark.parametrize("chip", BAD_CHIP)
def test_bad_chip_prints_usage_and_exits_2(script, chip, fake):
    env, log, work = fake
    proc = run_script(script, "1", chip, cwd=work, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"usage: bash test/{script} ")
    assert "error: CHIP must be letters and digits" in proc.stderr
    assert _calls(log) == [] and list(work.iterdir()) == []


@pytest.mark.skipif(not _existing("onnx2om.sh"), reason="no onnx2om.sh")
def test_onnx2om_needs_a_chip(fake):
    env, log, work = fake
    proc = run_script("onnx2om.sh", "1", cwd=work, env=env)
    assert proc.returncode == 2 and "error: CHIP must be letters and digits" in proc.stderr
    assert _calls(log) == []


BAD_FOLDERS = ["", "a/b", "..", ".", "/tmp", "/", "../result/x", "x/..", ".hidden", "result/2024_01_01-00_00_00"]


@pytest.mark.parametrize("folder", BAD_FOLDERS, ids=[repr(f) for f in BAD_FOLDERS])
def test_bad_result_folder_prints_usage_and_exits_2(folder, fake):
    env, log, work = fake
    proc = run_script("postprocess_data.sh", folder, cwd=work, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("usage: bash test/postprocess_data.sh FOLDER")
    assert "error: FOLDER must be a folder name directly inside result/" in proc.stderr
    assert _calls(log) == []


def test_good_arguments_reach_python(fake):
    env, log, work = fake
    assert run_script("postprocess_data.sh", "2024_01_01-00_00_00", cwd=work, env=env).returncode == 0
    assert run_script("pth2onnx.sh", "16", cwd=work, env=env).returncode == 0
    calls = _calls(log)
    assert calls[0].endswith("TinyBERT_postprocess.py --result_dir result/2024_01_01-00_00_00")
    assert calls[1].endswith("TinyBERT_pth2onnx.py --batch_size 16")


def test_run_all_refuses_extra_arguments(fake):
    env, log, work = fake
    proc = run_script("run_all.sh", "1", "310P3", "oops", cwd=work, env=env)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: bash test/run_all.sh")
    assert _calls(log) == []


@pytest.mark.parametrize("script", _existing("preprocess_data.sh", "benchmark.sh"))
def test_unknown_option_is_a_usage_error(script, tmp_path):
    """Scripts without positional arguments hand options to argparse: usage and exit 2 as well."""
    proc = run_script(script, "--no_such_option", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "usage:" in proc.stderr and "unrecognized arguments: --no_such_option" in proc.stderr
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- first failure stops the job, with its status
STAGES = ["export", "preprocess", "infer", "postprocess"]


@pytest.mark.parametrize("failing,code", [("export", 3), ("preprocess", 4), ("infer", 7), ("postprocess", 5)])
def test_run_all_stops_at_the_first_failing_stage(failing, code, fake):
    env, log, work = fake
    proc = run_script("run_all.sh", "1", cwd=work, env={**env, f"FAIL_{failing}": str(code)})
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert _stages(log) == STAGES[: STAGES.index(failing) + 1]
    assert f"error: {failing} failed (stand-in)" in proc.stderr
    assert "=== TinyBERT" not in proc.stdout


def test_run_all_runs_every_stage_when_all_succeed(fake):
    env, log, work = fake
    proc = run_script("run_all.sh", "1", cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    assert _stages(log) == STAGES
    assert _calls(log)[-1].endswith("--result_dir result/2024_01_01-00_00_00")
    assert proc.stdout.strip().splitlines()[-1].startswith("=== TinyBERT bs1: acc:0.5000")


@pytest.mark.parametrize("script,args,stage", [("pth2onnx.sh", ["1"], "export"),
                                                ("preprocess_data.sh", [], "preprocess"),
                                                ("ais_inference.sh", ["1"], "infer"),
                                                ("postprocess_data.sh", ["x"], "postprocess")])
def test_stage_scripts_pass_on_the_exit_status(script, args, stage, fake):
    env, log, work = fake
    proc = run_script(script, *args, cwd=work, env={**env, f"FAIL_{stage}": "6"})
    assert proc.returncode == 6, proc.stderr


def test_run_all_for_real_stops_at_a_missing_checkpoint(tmp_path):
    """With the real interpreter: export fails (exit 3, one line) and nothing after it runs."""
    proc = run_script("run_all.sh", "1", cwd=tmp_path,
                      env={"TINYBERT_MODEL_DIR": str(tmp_path / "nowhere"), "TINYBERT_BACKEND": ""})
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nowhere'}: checkpoint folder not found"
    assert sorted(os.listdir(tmp_path)) == []
