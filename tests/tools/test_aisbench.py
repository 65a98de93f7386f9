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

from conftest import ROOT, SHARED, WORDS, early_job, early_result, run_cli_in_process, write_tsv
from accel_support import (BS, STUB_BIN, STUB_PYTHON, accel_base, cli, error_lines, fake_cann_toolkit,  # noqa: F401
                           postprocess, recorded, script, seed_auto_choice, tool_env, workdir)
from tinybert_infer.tools.aisbench import throughput_from_output
from tinybert_infer.models.synthetic import write_random_checkpoint

INPUTS = "bert_bin/input_ids,bert_bin/segment_ids,bert_bin/input_mask"
EXPECTED_ARGV = ["--model", f"TinyBERT_bs{BS}.om", "--input", INPUTS, "--output", "result", "--outfmt", "TXT",
                 "--batchsize", str(BS)]
TIMESTAMP = r"\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d"


def claimed(folder):
    """The exact command, with the folder claimed by the project passed as --output_dirname."""
    return EXPECTED_ARGV + ["--output_dirname", folder]
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
    folder = reported_folder(npu.stdout)
    assert re.fullmatch(TIMESTAMP, folder)
    assert recorded(tmp_path, "ais_bench") == [claimed(folder)]
    assert f"[path] ais_bench wrote result/{folder}" in npu.stdout
    result = workdir / "result" / folder
    assert sorted(p.name for p in result.iterdir()) == sorted(f"input{i}_0.txt" for i in range(SAMPLES))  # no marker
    summary = json.loads((workdir / "result" / f"{folder}_summary.json").read_text())
    assert len(summary["filesinfo"]) == SAMPLES  # padding slots have no entry
    [shown] = re.findall(r"throughput: ([0-9.]+) samples/s", npu.stdout)
    assert float(shown) == pytest.approx(summary["throughput"], abs=0.006)

    seed_auto_choice(workdir)  # the default (auto) host run, without seconds of measuring
    cpu = script("ais_inference.sh", BS, cwd=workdir, env=tool_env(tmp_path, ais_bench=False))
    assert "[path] host backend" in cpu.stdout
    cpu_folder = reported_folder(cpu.stdout)

    npu_acc = accuracy_line(script("postprocess_data.sh", folder, cwd=workdir, env=env))
    cpu_acc = accuracy_line(postprocess(workdir, cpu_folder))
    assert npu_acc == cpu_acc
    for i in range(SAMPLES):
        a = np.loadtxt(result / f"input{i}_0.txt")
        b = np.loadtxt(workdir / "result" / cpu_folder / f"input{i}_0.txt")
        assert np.allclose(a, b, atol=2e-6), i


def test_without_the_om_the_host_backend_runs(workdir, tmp_path):
    seed_auto_choice(workdir)  # the default (auto) host run, without seconds of measuring
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
    assert recorded(tmp_path, "ais_bench") == [claimed(reported_folder(proc.stdout))]


def test_options_pass_through_and_an_existing_output_dirname_is_refused(workdir, tmp_path):
    make_om(workdir)
    env = tool_env(tmp_path)
    proc = script("ais_inference.sh", BS, "--output_dirname", "bs4", cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stderr
    assert recorded(tmp_path, "ais_bench") == [claimed("bs4")]
    assert reported_folder(proc.stdout) == "bs4"
    again = script("ais_inference.sh", BS, "--output_dirname", "bs4", cwd=workdir, env=env)
    assert again.returncode == 5
    assert "already exists" in error_lines(again)[0]
    assert len(recorded(tmp_path, "ais_bench")) == 1  # ais_bench would have written into it: not called


def test_a_failing_ais_bench_exits_non_zero_with_its_error(workdir, tmp_path):
    make_om(workdir)
    proc = script("ais_inference.sh", BS, cwd=workdir, env=tool_env(tmp_path, AIS_BENCH_STUB_FAIL=1))
    assert proc.returncode == 7
    [error] = error_lines(proc)
    assert error.startswith("error: ais_bench failed (exit 1)") and "acl init failed" in error
    assert not (workdir / "result").exists() or not list((workdir / "result").iterdir())  # claimed folder removed


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

    seed_auto_choice(workdir)  # the default (auto) host run, without seconds of measuring
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


# ---------------------------------------------------------------- issue 14: the real front-end's behaviour
def int32_om(workdir, tmp_path):
    """TinyBERT_bs4.om from the stand-in atc in the mode where atc turns the int64 inputs into int32."""
    proc = script("onnx2om.sh", BS, "310P3", cwd=workdir, env=tool_env(tmp_path, ATC_STUB_INPUT_DTYPE="int32"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def preprocess_int32(workdir, accel_base, tiny_checkpoint):
    # in-process: the files are the subject (the slow shared-model test runs preprocess_data.sh --dtype int32)
    proc = run_cli_in_process("preprocess", "--tsv", accel_base / "glue_dir" / "SST-2" / "dev.tsv", "--model_dir",
                              tiny_checkpoint, "--output_dir", "bert_bin", "--dtype", "int32", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((workdir / "bert_bin" / "manifest.json").read_text())["dtype"] == "int32"
    assert (workdir / "bert_bin" / "input_ids" / "input0.bin").stat().st_size == 64 * 4


def stub_ais_bench(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", "ais_bench", *map(str, args)], env=env, capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_stand_in_packs_by_size_divisibility_and_writes_multi_row_outputs(workdir, tmp_path):
    # What the real ais_bench does with int64 files on an int32 OM at an even BS: BS/2 files per batch.
    int32_om(workdir, tmp_path)
    env = tool_env(tmp_path)
    proc = stub_ais_bench("--model", f"TinyBERT_bs{BS}.om", "--input", INPUTS, "--output", "result", "--outfmt", "TXT",
                          "--output_dirname", "packed", cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stdout
    assert f"filesperbatch:{BS // 2} runcount:{-(-SAMPLES // (BS // 2))}" in proc.stdout
    assert len((workdir / "result" / "packed" / "input0_0.txt").read_text().splitlines()) == 2
    # Postprocessing refuses such a file (it used to score its first row): exit 5, naming the file.
    post = script("postprocess_data.sh", "packed", cwd=workdir, env=env)
    assert post.returncode == 5, post.stdout + post.stderr
    [error] = error_lines(post)
    assert "input0_0.txt: 2 rows, expected one sample's" in error
    assert not any(ln.startswith("acc:") for ln in post.stdout.splitlines())


def test_int32_om_with_int64_files_stops_before_ais_bench_with_what_to_run(workdir, tmp_path):
    int32_om(workdir, tmp_path)
    proc = script("ais_inference.sh", BS, cwd=workdir, env=tool_env(tmp_path))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    [error] = error_lines(proc)
    assert proc.stderr.strip().splitlines() == [error]
    assert "input_ids/input0.bin: 512 bytes per sample (int64)" in error and "input_ids as int32 [4,64]" in error
    assert "bash test/preprocess_data.sh --dtype int32" in error
    assert recorded(tmp_path, "ais_bench") == []
    assert not (workdir / "result").exists()


def test_int32_om_with_int32_files_scores_like_the_cpu_path(workdir, tmp_path, accel_base, tiny_checkpoint):
    env = tool_env(tmp_path)
    # the reference: what ais_inference.sh runs on the host, in-process (the host leg below is the script)
    cpu = run_cli_in_process("infer", "--model", f"TinyBERT_sim_bs{BS}.onnx", "--input", INPUTS, "--output", "result",
                             "--outfmt", "TXT", "--batchsize", BS, "--backend", "onnxruntime", cwd=workdir)
    cpu_acc = accuracy_line(postprocess(workdir, reported_folder(cpu.stdout)))
    int32_om(workdir, tmp_path)
    preprocess_int32(workdir, accel_base, tiny_checkpoint)
    npu = script("ais_inference.sh", BS, cwd=workdir, env=env)
    assert npu.returncode == 0, npu.stdout + npu.stderr
    assert f"filesperbatch:{BS} " in npu.stdout
    assert accuracy_line(postprocess(workdir, reported_folder(npu.stdout))) == cpu_acc
    # The host backends read the int32 files too (told apart by their size).
    host = script("ais_inference.sh", BS, "--backend", "onnxruntime", cwd=workdir, env=env)
    assert accuracy_line(postprocess(workdir, reported_folder(host.stdout))) == cpu_acc


def test_tool_report_must_show_bs_files_per_batch_and_the_claimed_folder(tmp_path):
    from tinybert_infer.tools.aisbench import check_tool_report
    from tinybert_infer.errors import ToolError

    folder = tmp_path / "result" / "2024_01_01-00_00_00"
    good = (f"[INFO] output path:{folder}\n"
            "[INFO] get filesperbatch files0 size:256 tensor0size:4096 filesperbatch:16 runcount:55\n")
    check_tool_report(good, folder, 16)
    with pytest.raises(ToolError, match="packed 8 files per batch, not BS 16"):
        check_tool_report(good.replace("filesperbatch:16", "filesperbatch:8"), folder, 16)
    with pytest.raises(ToolError, match="not to the folder claimed for it"):
        check_tool_report(good.replace("00_00_00", "00_00_01", 1), folder, 16)


def test_stand_in_reuses_a_folder_within_the_same_second_and_writes_one_line_summaries(workdir, tmp_path):
    make_om(workdir)
    env = tool_env(tmp_path)
    args = ("--model", f"TinyBERT_bs{BS}.om", "--input", INPUTS, "--output", "result", "--output_dirname", "same")
    first, second = (stub_ais_bench(*args, cwd=workdir, env=env) for _ in range(2))
    assert first.returncode == second.returncode == 0, second.stdout
    assert "[INFO] output path:result/same" in second.stdout  # the existing folder, taken again
    summary = (workdir / "result" / "same_summary.json").read_text()
    assert len(summary.splitlines()) == 1 and list(json.loads(summary)["filesinfo"]) == [str(i) for i in range(SAMPLES)]


def test_two_runs_started_together_get_two_complete_folders(workdir, tmp_path):
    make_om(workdir)
    env = tool_env(tmp_path)
    cmd = ["bash", str(ROOT / "test" / "ais_inference.sh"), str(BS)]
    procs = [subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folders = [reported_folder(out) for out, _ in outs]
    assert len(set(folders)) == 2 and all(re.fullmatch(TIMESTAMP, f) for f in folders)
    accs = [accuracy_line(postprocess(workdir, f)) for f in folders]
    assert accs[0] == accs[1]
    for f in folders:
        assert sorted(p.name for p in (workdir / "result" / f).iterdir()) == sorted(f"input{i}_0.txt" for i in range(SAMPLES))


@pytest.mark.parametrize("args, needle", [
    (["--warmup_count", "-1"], "expected an integer >= 0, got '-1'"),
    (["--device", "256"], "expected one device id in [0, 255], got '256'"),
    (["--loop", "0"], "expected a positive integer, got '0'"),
])
def test_values_the_real_tool_rejects_are_refused_before_it_runs(workdir, tmp_path, args, needle):
    make_om(workdir)
    proc = script("ais_inference.sh", BS, *args, cwd=workdir, env=tool_env(tmp_path))
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert recorded(tmp_path, "ais_bench") == []


def test_perf_forwards_pure_data_type_and_refuses_threads_in_one_line(workdir, tmp_path):
    make_om(workdir)
    env = tool_env(tmp_path)
    # (zero: ais_bench's random data is random bytes, token ids far outside the vocabulary)
    proc = script("ais_perf.sh", BS, 5, "--pure_data_type", "zero", "--warmup_count", "0", "--device", "3",
                  cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recorded(tmp_path, "ais_bench") == [["--model", f"TinyBERT_bs{BS}.om", "--loop", "5", "--batchsize", str(BS),
                                                "--warmup_count", "0", "--device", "3", "--pure_data_type", "zero"]]
    threads = script("ais_perf.sh", BS, 5, "--threads", "2", cwd=workdir, env=env)
    assert threads.returncode == 2
    assert threads.stderr.strip().splitlines() == [
        "error: --threads: ais_bench has no such option; it applies to the host backends (add --backend NAME to run there)"]
    assert len(recorded(tmp_path, "ais_bench")) == 1


def test_stand_in_rejects_a_negative_warmup_and_needs_aclruntime(tmp_path):
    env = tool_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "ais_bench", "--model", "x.om", "--warmup_count", "-1"],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "argument --warmup_count" in proc.stderr
    only_front_end = tmp_path / "front_end"
    only_front_end.mkdir()
    (only_front_end / "ais_bench").symlink_to(STUB_PYTHON / "ais_bench")
    proc = subprocess.run([sys.executable, "-m", "ais_bench", "--model", "x.om"], capture_output=True, text=True,
                          env=dict(env, PYTHONPATH=str(only_front_end)), cwd=tmp_path)
    assert proc.returncode == 1 and "No module named 'aclruntime'" in proc.stderr


def test_without_aclruntime_the_real_path_stops_in_one_line_before_running(workdir, tmp_path):
    make_om(workdir)
    only_front_end = tmp_path / "front_end"
    only_front_end.mkdir()
    (only_front_end / "ais_bench").symlink_to(STUB_PYTHON / "ais_bench")
    proc = script("ais_inference.sh", BS, cwd=workdir, env=tool_env(tmp_path, PYTHONPATH=only_front_end))
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "aclruntime is not importable" in proc.stderr
    assert recorded(tmp_path, "ais_bench") == []


def test_manifest_check_reads_the_real_one_line_summary(workdir, tmp_path):
    # Folders given in another order: same sizes, so ais_bench runs; its filesinfo shows what each sample read.
    make_om(workdir)
    env = tool_env(tmp_path)
    swapped = "bert_bin/input_ids,bert_bin/input_mask,bert_bin/segment_ids"
    run = cli("ais-infer", "--batchsize", BS, "--input", swapped, "--output_dirname", "swapped", cwd=workdir, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    post = script("postprocess_data.sh", "swapped", cwd=workdir, env=env)
    assert post.returncode == 5, post.stdout + post.stderr
    [error] = error_lines(post)
    assert ("swapped_summary.json: sample 0 was computed from bert_bin/input_ids/input0.bin, "
            "bert_bin/input_mask/input0.bin") in error


@early_job("run_all_chip")
def prepare_run_all_chip(root):
    """bash test/run_all.sh 4 310P3 from a clean working folder on the tiny checkpoint (tiny_checkpoint's seed),
    CANN (the stand-ins) reachable only through ASCEND_TOOLKIT_HOME's set_env.sh."""
    checkpoint = write_random_checkpoint(root / "ckpt" / "SST-2_model", words=WORDS, seed=1)
    data = write_tsv(root / "glue_dir" / "SST-2" / "dev.tsv").parent
    home = fake_cann_toolkit(root, f'export PATH="{STUB_BIN}:$PATH"\nexport PYTHONPATH="{STUB_PYTHON}:$PYTHONPATH"')
    work = root / "work"
    work.mkdir()
    env = tool_env(root, stubs_on_path=False, ais_bench=False, ASCEND_TOOLKIT_HOME=home,
                   TINYBERT_MODEL_DIR=checkpoint, TINYBERT_DATA_DIR=data)
    return ["bash", ROOT / "test" / "run_all.sh", BS, "310P3"], work, env


@pytest.fixture()
def run_all_chip(tmp_path_factory):
    """The finished run_all.sh run with a CHIP (started early: conftest.EARLY_JOBS) and its folder."""
    return early_result("run_all_chip", tmp_path_factory)


def test_run_all_with_a_chip_finds_cann_through_ascend_toolkit_home(run_all_chip):
    proc, root = run_all_chip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(recorded(root, "atc")) == 1 and "[atc] OM: TinyBERT_bs4.om" in proc.stdout
    assert "[path] ais_bench on the NPU" in proc.stdout and len(recorded(root, "ais_bench")) == 1
    assert re.search(r"^=== TinyBERT bs4: acc:0\.\d{4}", proc.stdout, re.M)


def test_run_all_with_a_chip_and_no_cann_stops_in_one_line(tmp_path, tiny_checkpoint, tiny_tsv):
    work = tmp_path / "work"
    work.mkdir()
    env = tool_env(tmp_path, stubs_on_path=False, TINYBERT_MODEL_DIR=tiny_checkpoint, TINYBERT_DATA_DIR=tiny_tsv.parent)
    proc = script("run_all.sh", BS, "310P3", cwd=work, env=env)
    assert proc.returncode == 7
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: CHIP 310P3 given, but no CANN toolkit found")
    assert proc.stdout == "" and list(work.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "SST-2_model").is_dir(), reason="../shared not present")
def test_shared_model_with_an_int32_om_is_right_or_refused_and_concurrent_runs_stay_apart(tmp_path):
    """Issue 14's acceptance on the real checkpoint: an OM with int32 inputs at BS 1, 16, 64 either scores
    the oracle's accuracy or stops with one line and a non-zero exit; two runs started together both score it."""
    oracle = json.loads((SHARED / "reference" / "sst2_dev_reference_predictions.json").read_text())
    env = tool_env(tmp_path, TINYBERT_MODEL_DIR=SHARED / "SST-2_model", TINYBERT_DATA_DIR=SHARED / "glue_dir" / "SST-2",
                   ATC_STUB_INPUT_DTYPE="int32")
    work = tmp_path / "work"
    work.mkdir()
    assert script("preprocess_data.sh", cwd=work, env=env).returncode == 0  # ModelZoo's int64 files
    for bs in (1, 16, 64):
        for stage, args in (("pth2onnx.sh", [bs]), ("onnx2om.sh", [bs, "310P3"])):
            proc = script(stage, *args, cwd=work, env=env, timeout=1200)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        refused = script("ais_inference.sh", bs, cwd=work, env=env)
        assert refused.returncode == 4 and "test/preprocess_data.sh --dtype int32" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert script("preprocess_data.sh", "--dtype", "int32", cwd=work, env=env).returncode == 0
    for bs in (1, 16, 64):
        runs = [subprocess.Popen(["bash", str(ROOT / "test" / "ais_inference.sh"), str(bs)], cwd=work, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2 if bs == 16 else 1)]
        outs = [r.communicate(timeout=1200) for r in runs]
        assert [r.returncode for r in runs] == [0] * len(runs), outs
        folders = {reported_folder(out) for out, _ in outs}
        assert len(folders) == len(runs)
        for folder in folders:
            post = script("postprocess_data.sh", folder, cwd=work, env=env)
            assert accuracy_line(post) == f"acc:{oracle['accuracy']:.4f}", (bs, folder)
            preds = [int(np.argmax(np.loadtxt(work / "result" / folder / f"input{i}_0.txt"))) for i in range(oracle["n"])]
            assert preds == oracle["preds"], (bs, folder)


def test_om_records_its_onnx_and_ais_infer_refuses_a_stale_om_or_inputs_for_another_model(workdir, tmp_path,
                                                                                        tiny_checkpoint):
    """`om` leaves what the OM was compiled from beside it. ais_bench would run a stale OM (its ONNX exported
    again from another checkpoint, atc not rerun) or inputs tokenised with another vocabulary, exit 0: ais-infer
    refuses both in one line before the tool runs, and runs again once the OM is compiled afresh."""
    from tinybert_infer.export.onnx import export_checkpoint
    from tinybert_infer.models.specs import METADATA_NETWORK, read_onnx_metadata

    env = tool_env(tmp_path)
    onnx = workdir / f"TinyBERT_sim_bs{BS}.onnx"
    assert run_cli_in_process("om", "--batch_size", BS, "--chip", "310P3", cwd=workdir, env=env).returncode == 0
    record = json.loads((workdir / f"TinyBERT_bs{BS}.om.source").read_text())
    assert record["onnx"] == str(onnx) and record["model_network"] == read_onnx_metadata(onnx)[METADATA_NETWORK]

    other = shutil.copytree(tiny_checkpoint, tmp_path / "swapped_vocab")
    tokens = (other / "vocab.txt").read_text().splitlines()
    i, j = tokens.index("good"), tokens.index("bad")
    tokens[i], tokens[j] = tokens[j], tokens[i]
    (other / "vocab.txt").write_text("\n".join(tokens) + "\n")
    tsv = write_tsv(tmp_path / "dev.tsv")
    made = run_cli_in_process("preprocess", "--tsv", tsv, "--model_dir", other, "--output_dir", workdir / "other_bin",
                              cwd=workdir, env=env)
    assert made.returncode == 0, made.stderr
    dirs = ",".join(f"other_bin/{n}" for n in ("input_ids", "segment_ids", "input_mask"))
    run = cli("ais-infer", "--batchsize", BS, "--input", dirs, "--output_dirname", "foreign", cwd=workdir, env=env)
    assert run.returncode == 4, run.stdout + run.stderr
    [error] = error_lines(run)
    assert "other_bin/manifest.json: inputs were tokenised with vocabulary" in error

    retrained = write_random_checkpoint(tmp_path / "retrained", words=WORDS, seed=9)
    export_checkpoint(retrained, BS, workdir, tsv_path=tsv)  # the ONNX exported again; atc not rerun
    run = cli("ais-infer", "--batchsize", BS, "--output_dirname", "stale", cwd=workdir, env=env)
    assert run.returncode == 6, run.stdout + run.stderr
    [error] = error_lines(run)
    assert f"TinyBERT_bs{BS}.om: compiled from TinyBERT_sim_bs{BS}.onnx when it held network sha256:" in error
    assert f"bash test/onnx2om.sh {BS} CHIP" in error
    assert recorded(tmp_path, "ais_bench") == [] and not (workdir / "result").exists()

    assert run_cli_in_process("om", "--batch_size", BS, "--chip", "310P3", cwd=workdir, env=env).returncode == 0
    run = cli("ais-infer", "--batchsize", BS, "--output_dirname", "fresh", cwd=workdir, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
