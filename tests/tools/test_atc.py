"""Stage 2 contract: bash test/onnx2om.sh BS CHIP builds ModelZoo's atc command from the ONNX graph.

Checked against the stand-in atc (tests/stubs/bin/atc), which records its argv and writes the OM the way
atc does (plain or with the _linux_x86_64 suffix) or fails with atc's failure lines.
"""

import shlex

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import run_cli_in_process
from accel_support import (BS, STUB_BIN, accel_base, error_lines, fake_cann_toolkit, recorded,  # noqa: F401
                           script, tool_env, workdir)
from tinybert_infer.tools.atc import build_atc_command, read_onnx_info, soc_version
from tinybert_infer.errors import UsageError

def om(bs, chip, *args, cwd, env):
    """What `bash test/onnx2om.sh BS CHIP ARGS` runs without a CANN toolkit (om --batch_size BS --chip CHIP ARGS),
    in this process, the stand-in atc on PATH all the same; the script itself: the tests that call script()."""
    return run_cli_in_process("om", "--batch_size", bs, "--chip", chip, *args, cwd=cwd, env=env)


EXPECTED_ARGV = [
    "--framework=5",
    f"--model=TinyBERT_sim_bs{BS}.onnx",
    f"--output=TinyBERT_bs{BS}",
    "--input_format=ND",
    f"--input_shape=input_ids:{BS},64;segment_ids:{BS},64;input_mask:{BS},64",
    "--log=error",
    "--soc_version=Ascend310P3",
    "--optypelist_for_implmode=Gelu",
    "--op_select_implmode=high_performance",
]


def test_dry_run_prints_the_exact_command_without_atc(workdir, tmp_path):
    proc = script("onnx2om.sh", BS, "310P3", "--dry-run", cwd=workdir, env=tool_env(tmp_path, stubs_on_path=False))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == shlex.join(["atc", *EXPECTED_ARGV])
    assert not list(workdir.glob("*.om"))


def test_atc_runs_with_the_graphs_own_inputs_and_writes_the_om(workdir, tmp_path):
    proc = script("onnx2om.sh", BS, "310P3", cwd=workdir, env=tool_env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recorded(tmp_path, "atc") == [EXPECTED_ARGV]
    om = workdir / f"TinyBERT_bs{BS}.om"
    assert om.read_bytes() == (workdir / f"TinyBERT_sim_bs{BS}.onnx").read_bytes()  # the stand-in's "conversion"
    assert "ATC run success" in proc.stdout


def test_os_arch_suffixed_om_is_renamed_to_the_plain_name(workdir, tmp_path):
    proc = om(BS, "310P3", cwd=workdir, env=tool_env(tmp_path, ATC_STUB_MODE="suffix"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in workdir.glob("*.om")) == [f"TinyBERT_bs{BS}.om"]
    assert f"wrote TinyBERT_bs{BS}_linux_x86_64.om; renamed to TinyBERT_bs{BS}.om" in proc.stdout


def test_stale_om_of_another_batch_is_not_taken_for_the_new_one(workdir, tmp_path):
    (workdir / f"TinyBERT_bs{BS}6.om").write_bytes(b"older bs46 model")  # TinyBERT_bs4* would match it
    proc = om(BS, "310P3", cwd=workdir, env=tool_env(tmp_path, ATC_STUB_MODE="suffix"))
    assert proc.returncode == 0, proc.stderr
    assert (workdir / f"TinyBERT_bs{BS}6.om").read_bytes() == b"older bs46 model"
    assert (workdir / f"TinyBERT_bs{BS}.om").is_file()


def test_failing_atc_reports_its_failure_lines_and_exits_non_zero(workdir, tmp_path):
    proc = om(BS, "310P3", cwd=workdir, env=tool_env(tmp_path, ATC_STUB_MODE="fail"))
    assert proc.returncode == 7
    failures = [ln for ln in proc.stderr.splitlines() if ln.startswith("[atc failure]")]
    assert any("E11001: Failed to infer the output shape" in ln for ln in failures)
    assert any("ATC run failed" in ln for ln in failures)
    assert any("[ERROR] GE" in ln for ln in failures)
    [error] = error_lines(proc)
    assert error.startswith("error: atc failed (exit 255)")
    assert not list(workdir.glob("*.om"))


def test_absent_atc_is_one_clear_line(workdir, tmp_path):
    proc = script("onnx2om.sh", BS, "310P3", cwd=workdir, env=tool_env(tmp_path, stubs_on_path=False))
    assert proc.returncode == 7
    assert proc.stderr.strip().splitlines() == error_lines(proc)
    [error] = error_lines(proc)
    assert "atc not found on PATH" in error and "set_env.sh" in error


def test_cann_environment_is_sourced_from_ascend_toolkit_home(workdir, tmp_path):
    # atc is only reachable through set_env.sh, which (like CANN's) reads unset variables.
    home = fake_cann_toolkit(tmp_path, f'export PATH="{STUB_BIN}:$PATH"')
    env = tool_env(tmp_path, stubs_on_path=False, ASCEND_TOOLKIT_HOME=home)
    proc = script("onnx2om.sh", BS, "310P3", cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"[cann] source {home}/set_env.sh" in proc.stdout
    assert recorded(tmp_path, "atc") == [EXPECTED_ARGV]


def test_extra_atc_options_pass_through_and_replace_built_ones(workdir, tmp_path):
    proc = script("onnx2om.sh", BS, "310", "--", "--log=info", "--precision_mode=allow_mix_precision",
                  cwd=workdir, env=tool_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    [argv] = recorded(tmp_path, "atc")
    expected = [a.replace("--log=error", "--log=info").replace("Ascend310P3", "Ascend310") for a in EXPECTED_ARGV]
    assert argv == expected + ["--precision_mode=allow_mix_precision"]


@pytest.mark.parametrize("chip", ["310P3;rm -rf x", "310 P3", "", "310-P3"])
def test_chip_must_be_letters_and_digits(workdir, tmp_path, chip):
    proc = script("onnx2om.sh", BS, chip, cwd=workdir, env=tool_env(tmp_path))
    assert proc.returncode == 2
    assert "CHIP must be letters and digits" in proc.stderr
    assert recorded(tmp_path, "atc") == []


def test_soc_version_from_the_npu_smi_name():
    assert soc_version("310P3") == "Ascend310P3"
    assert soc_version("310") == "Ascend310"
    assert soc_version("710") == "Ascend710"  # the 310P's former name, as older CANN takes it
    assert soc_version("Ascend310P3") == "Ascend310P3"
    with pytest.raises(UsageError):
        soc_version("310P3 ")


def test_extra_options_may_not_redirect_model_or_output(workdir):
    info = read_onnx_info(workdir / f"TinyBERT_sim_bs{BS}.onnx")
    with pytest.raises(UsageError):
        build_atc_command(info, "310P3", output="x", extra=["--output=elsewhere"])


def _write_graph(path, *, batch=BS, opset=11, dtype=TensorProto.INT64, dynamic=False):
    dims = ["batch" if dynamic else batch, 64]
    inputs = [helper.make_tensor_value_info(n, dtype, dims) for n in ("input_ids", "segment_ids", "input_mask")]
    out = helper.make_tensor_value_info("output", dtype, dims)
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["output"])], "g", inputs, [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


@pytest.mark.parametrize("case, needle", [
    ("missing", "ONNX model not found"),
    ("dynamic", "dynamic shape"),
    ("opset9", "opset 9"),
    ("opset19", "opset 19"),
    ("float_input", "is FLOAT"),
    ("batch_mismatch", "has batch 2, but BS is 4"),
    ("garbage", "not a readable ONNX model"),
])
def test_what_atc_would_reject_late_is_refused_before_calling_it(tmp_path, case, needle):
    model = tmp_path / "model.onnx"
    if case == "dynamic":
        _write_graph(model, dynamic=True)
    elif case.startswith("opset"):
        _write_graph(model, opset=int(case[5:]))
    elif case == "float_input":
        _write_graph(model, dtype=TensorProto.FLOAT)
    elif case == "batch_mismatch":
        _write_graph(model, batch=2)
    elif case == "garbage":
        model.write_bytes(b"\x00not a protobuf\xff" * 10)
    # in-process (the stand-in atc on PATH all the same): what is refused, not how the command starts
    proc = run_cli_in_process("om", "--batch_size", BS, "--chip", "310P3", "--model", model, cwd=tmp_path,
                              env=tool_env(tmp_path))
    assert proc.returncode == 6, proc.stdout + proc.stderr
    [error] = error_lines(proc)
    assert str(model) in error and needle in error
    assert recorded(tmp_path, "atc") == []


def test_newer_opset_is_passed_with_a_warning(tmp_path):
    model = _write_graph(tmp_path / "model.onnx", opset=13)
    proc = run_cli_in_process("om", "--batch_size", BS, "--chip", "310P3", "--model", model, "--dry-run",
                              cwd=tmp_path, env=tool_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "CANN 5.x/6.x take only opset 11" in proc.stderr
