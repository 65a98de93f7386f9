"""bench/command.py: the benchmark's sub-commands run under the one CLI's error and Ctrl-C handling."""

import pytest

from conftest import run_cli_in_process
from error_helpers import assert_error
from tinybert_infer.bench import dynamic
from tinybert_infer.errors import INTERRUPTED_EXIT


def test_dynamic_bench_reports_a_usage_error_in_one_line(tmp_path):
    proc = run_cli_in_process("dynamic-bench", "--backend", "auto", "--work", tmp_path)
    assert_error(proc.returncode, proc.stderr, 2, "name the backends")


def test_dynamic_bench_ctrl_c_ends_as_interrupted(tmp_path, monkeypatch):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dynamic, "run_dynamic_bench", interrupted)
    proc = run_cli_in_process("dynamic-bench", "--work", tmp_path)
    assert_error(proc.returncode, proc.stderr, INTERRUPTED_EXIT, "interrupted")


def test_real_job_stability_on_a_missing_checkpoint_is_one_line(tmp_path):
    """Was a traceback when realjob had a CLI of its own."""
    missing = tmp_path / "none"
    proc = run_cli_in_process("real-job", "--stability", "1", "--model_dir", missing, "--data_dir", missing,
                              "--work", tmp_path / "work")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert_error(proc.returncode, proc.stderr, proc.returncode, str(missing))


@pytest.mark.parametrize("command", ["benchmark", "dynamic-bench", "real-job"])
def test_sub_commands_are_registered(command):
    proc = run_cli_in_process(command, "--help")
    assert proc.returncode == 0 and f"tinybert_infer {command}" in proc.stdout
