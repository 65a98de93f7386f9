"""Shared by the accelerator contract tests: the stand-in tools on PATH/PYTHONPATH and a working folder.

The stand-ins (tests/stubs/) record their argv to $STUB_ARGV_LOG; they are put first on PATH and
PYTHONPATH only in the environments built here, never for the rest of the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SHORT_TIMING, run_cli_in_process, write_tsv

STUBS = ROOT / "tests" / "stubs"
STUB_BIN = STUBS / "bin"
STUB_PYTHON = STUBS / "python"
BS = 4  # 13 tiny sentences: batches of 4, the last one padded
BARE_PATH = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])  # no atc/trtexec here


def tool_env(tmp_path, *, stubs_on_path=True, ais_bench=True, **extra) -> dict:
    """Environment for one test command: stand-ins first (python3 is this interpreter), argv log in tmp_path."""
    env = {k: v for k, v in os.environ.items() if k not in ("ASCEND_TOOLKIT_HOME", "PYTHONPATH", "TINYBERT_BACKEND")}
    env["PATH"] = (str(STUB_BIN) + os.pathsep if stubs_on_path else "") + BARE_PATH
    env["STUB_ARGV_LOG"] = str(tmp_path / "argv.log")
    env["PYTHON"] = sys.executable
    if ais_bench:
        env["PYTHONPATH"] = str(STUB_PYTHON)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def recorded(tmp_path, tool: str) -> list:
    log = tmp_path / "argv.log"
    if not log.is_file():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e["argv"] for e in entries if e["tool"] == tool]


def fake_cann_toolkit(tmp_path, exports: str) -> Path:
    """A toolkit folder whose set_env.sh, like CANN's, reads unset variables and ends on a false test."""
    home = tmp_path / "ascend-toolkit"
    home.mkdir()
    (home / "set_env.sh").write_text(
        "export LD_LIBRARY_PATH=/nonexistent/lib64:${LD_LIBRARY_PATH}\n"
        f"{exports}\n"
        "[ -d /nonexistent/ascend ] && export ASCEND_OPP_PATH=/nonexistent/opp\n")
    return home


@pytest.fixture(scope="session")
def accel_base(tmp_path_factory, tiny_exports) -> Path:
    """TinyBERT_sim_bs4.onnx of the tiny checkpoint (the session's export), the tiny TSV and its bert_bin/."""
    base = tmp_path_factory.mktemp("accel")
    write_tsv(base / "glue_dir" / "SST-2" / "dev.tsv")
    shutil.copy(tiny_exports["static"].sim_path, base / f"TinyBERT_sim_bs{BS}.onnx")
    shutil.copytree(tiny_exports["bin"], base / "bert_bin")
    return base


@pytest.fixture()
def workdir(tmp_path, accel_base) -> Path:
    """A fresh ModelZoo-style working folder: TinyBERT_sim_bs4.onnx and bert_bin/."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(accel_base / f"TinyBERT_sim_bs{BS}.onnx", work)
    shutil.copytree(accel_base / "bert_bin", work / "bert_bin")
    return work


def seed_auto_choice(workdir: Path) -> None:
    """`--backend auto`'s choice for TinyBERT_sim_bs4.onnx, measured briefly here and cached in workdir as a first
    auto run on this host leaves it: a later auto run there takes it instead of measuring for seconds. For tests
    of the path a script takes, not of auto's measurement (test_optimize, test_pipeline_scripts)."""
    from tinybert_infer.plan.select import choose_backend

    choose_backend(workdir / f"TinyBERT_sim_bs{BS}.onnx", batch_size=BS, policy=SHORT_TIMING,
                   log=lambda s: None).close()


def script(name: str, *args, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    """bash test/<name> ARGS with exactly env (conftest.run_script would merge os.environ back in)."""
    return subprocess.run(["bash", str(ROOT / "test" / name), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def cli(*args, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "tinybert_infer", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def postprocess(workdir: Path, folder: str) -> subprocess.CompletedProcess:
    """What `bash test/postprocess_data.sh FOLDER` runs in workdir, in this process (no sklearn import per
    call); for tests whose subject is the folder inference wrote, not the script (tested as a script too)."""
    return run_cli_in_process("postprocess", "--result_dir", workdir / "result" / folder,
                              "--bin_dir", workdir / "bert_bin")


def error_lines(proc) -> list:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
