"""Stage 4 on an Ascend host: the real ais_bench tool (`python3 -m ais_bench`) on TinyBERT_bsBS.om.

Builds ModelZoo's exact command (only options ais_bench 0.0.2 parses, checked by its rules first). Before
running it checks what ais_bench would get wrong silently: the OM's own input description (read through
aclruntime) must take exactly BS of the per-sample files, in their dtype; ais_bench itself only checks that
the tensor size is a multiple of the file size, and packs that many files per batch. The result folder is
claimed here (results.create_result_dir, atomically) and passed as --output_dirname, so concurrent runs
never share one; it stays marked incomplete until the tool's own report (output path, files per batch)
agrees. The throughput is read from <folder>_summary.json (or the printed summary block).
Performance-only runs are ais_bench's pure inference: `--loop N --batchsize BS` without inputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from tinybert_infer.errors import DataError, ToolError, UsageError
from tinybert_infer.fsutil import discard_dir
from tinybert_infer.layout import DEFAULT_BIN_DIR, DEFAULT_RESULT_DIR, FILE_DTYPES, INPUT_NAMES, om_stem
from tinybert_infer.run.results import OUTFMTS, clear_incomplete, create_result_dir, summary_path
from tinybert_infer.tools.atc import check_om_source
from tinybert_infer.tools.process import command_line, run_streamed

INSTALL_HINT = ("install ais_bench for this Python (the aclruntime and ais_bench wheels from "
                "Ascend/tools ais-bench_workload) and source /usr/local/Ascend/ascend-toolkit/set_env.sh")
_THROUGHPUT = re.compile(r"throughput\b.*?:\s*([-+0-9.eE]+)\s*$", re.I)
_OUTPUT_PATH = re.compile(r"\[INFO\] output path:(.+?)\s*$")
_FILES_PER_BATCH = re.compile(r"get filesperbatch .*\bfilesperbatch:(\d+)")
DEVICE_IDS = range(0, 256)  # ais_bench's --device range
# Host-backend options (documented for test/ais_inference.sh / ais_perf.sh) that ais_bench 0.0.2 lacks.
HOST_ONLY_OPTIONS = ("--threads", "--streams")

# Run under the interpreter that has the tool: the OM's input/output description from aclruntime (the
# session ais_bench itself opens), as one JSON line. aclruntime's dtype is an enum (name: int32, int64, ...).
_DESCRIBE_OM = r"""
import json, sys
import aclruntime
session = aclruntime.InferenceSession(sys.argv[1], int(sys.argv[2]), aclruntime.session_options())
def name(t):
    return getattr(t, "name", None) or str(t).rsplit(".", 1)[-1]
def describe(d):
    return {"name": d.name, "dtype": name(d.datatype), "shape": [int(x) for x in d.shape], "realsize": int(d.realsize)}
print(json.dumps({"inputs": [describe(d) for d in session.get_inputs()],
                  "outputs": [describe(d) for d in session.get_outputs()]}))
if hasattr(session, "finalize"):
    session.finalize()
"""


@dataclass
class AisRun:
    result_dir: Optional[Path]
    throughput: Optional[float]
    source: str  # where the throughput was read


@dataclass
class OmTensor:
    name: str
    dtype: str       # aclruntime's name: int64, int32, float32, ...
    shape: List[int]
    realsize: int    # bytes of one full tensor (what ais_bench divides by the file size)


def module_available(module: str, python: str = sys.executable) -> bool:
    """Whether `python` can import `module` (the test scripts make the same check)."""
    if python == sys.executable:
        return importlib.util.find_spec(module) is not None
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


def ais_bench_available(python: str = sys.executable) -> bool:
    return module_available("ais_bench", python)


def check_ready(om: Path, python: str) -> None:
    """The real path needs the OM, ais_bench and its NPU runtime aclruntime; a missing one is one line."""
    if not Path(om).is_file():
        raise ToolError(f"{om}: OM model not found (convert it first: bash test/onnx2om.sh BS CHIP)")
    for module in ("ais_bench", "aclruntime"):
        if not module_available(module, python):
            raise ToolError(f"{module} is not importable by {python}: {INSTALL_HINT}")


def describe_om(om: Path, device: int = 0, python: str = sys.executable) -> List[OmTensor]:
    """The OM's inputs as aclruntime loads them (one model load on the device)."""
    run = subprocess.run([python, "-c", _DESCRIBE_OM, str(om), str(device)], capture_output=True, text=True)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    if run.returncode != 0 or not lines:
        detail = (run.stderr.strip().splitlines() or run.stdout.strip().splitlines() or ["no output"])[-1]
        raise ToolError(f"{om}: aclruntime could not describe the model (exit {run.returncode}): {detail}")
    try:
        return [OmTensor(d["name"], d["dtype"], list(d["shape"]), int(d["realsize"]))
                for d in json.loads(lines[-1])["inputs"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ToolError(f"{om}: unreadable aclruntime description ({exc})") from None


def _sample_bytes(folder: Path) -> tuple:
    from tinybert_infer.data.features import list_input_files

    names = list_input_files(folder)
    first = Path(folder) / names[0]
    if first.suffix.lower() == ".npy":
        import numpy as np

        return first, int(np.load(first, allow_pickle=False).nbytes)
    return first, first.stat().st_size


def check_inputs_fit(om: Path, om_inputs: Sequence[OmTensor], input_dirs: Sequence, batch_size: int) -> None:
    """Each OM input must take exactly batch_size of its folder's files, in their dtype.

    ais_bench refuses a file size only when the tensor size is not a multiple of it: int64 files on an
    OM whose inputs atc made int32 are packed BS/2 to a batch at any even BS and scored wrongly."""
    if len(om_inputs) != len(input_dirs):
        raise DataError(f"{om}: {len(om_inputs)} inputs, but {len(input_dirs)} input folders were given")
    from tinybert_infer.data.features import manifest_dtype

    files_dtype = manifest_dtype(Path(input_dirs[0]).parent)  # None: another tool's folders, size check only
    for tensor, folder in zip(om_inputs, input_dirs):
        first, size = _sample_bytes(Path(folder))
        if size * batch_size == tensor.realsize and files_dtype in (None, tensor.dtype):
            continue
        if tensor.dtype in FILE_DTYPES and tensor.shape[:1] == [batch_size]:
            fix = f"run bash test/preprocess_data.sh --dtype {tensor.dtype} (writes bert_bin/ in the OM's dtype)"
        else:
            fix = f"convert the OM for BS {batch_size} (bash test/onnx2om.sh {batch_size} CHIP)"
        packing = f"{tensor.realsize / size:g}" if size else "no"
        raise DataError(f"{first}: {size} bytes per sample ({files_dtype or 'dtype unknown'}), but {om} takes "
                        f"{tensor.name} as {tensor.dtype} [{','.join(map(str, tensor.shape))}] = {tensor.realsize} "
                        f"bytes, {tensor.realsize / batch_size:g} per sample at BS {batch_size}; ais_bench would pack "
                        f"{packing} files per batch: {fix}")


def default_inputs(bin_dir=DEFAULT_BIN_DIR) -> List[str]:
    return [str(Path(bin_dir) / name) for name in INPUT_NAMES]


def build_infer_command(om, input_dirs: Sequence, output, batch_size: int, *, outfmt: str = "TXT",
                        output_dirname: Optional[str] = None, loop: Optional[int] = None,
                        warmup_count: Optional[int] = None, device: Optional[int] = None,
                        python: str = sys.executable) -> List[str]:
    """ModelZoo's TinyBERT command; optional options only when asked for (all exist in ais_bench 0.0.2)."""
    if outfmt.upper() not in OUTFMTS:
        raise UsageError(f"--outfmt {outfmt!r}: use one of {', '.join(OUTFMTS)}")
    check_tool_options(loop=loop, warmup_count=warmup_count, device=device)
    argv = [python, "-m", "ais_bench", "--model", str(om), "--input", ",".join(str(d) for d in input_dirs),
            "--output", str(output), "--outfmt", outfmt.upper(), "--batchsize", str(batch_size)]
    return argv + _optional(output_dirname=output_dirname, loop=loop, warmup_count=warmup_count, device=device)


def build_perf_command(om, loop: int, batch_size: int, *, warmup_count: Optional[int] = None,
                       device: Optional[int] = None, pure_data_type: Optional[str] = None,
                       python: str = sys.executable) -> List[str]:
    check_tool_options(loop=loop, warmup_count=warmup_count, device=device, pure_data_type=pure_data_type)
    argv = [python, "-m", "ais_bench", "--model", str(om), "--loop", str(loop), "--batchsize", str(batch_size)]
    return argv + _optional(warmup_count=warmup_count, device=device, pure_data_type=pure_data_type)


def _optional(**options) -> List[str]:
    return [a for key, value in options.items() if value is not None for a in (f"--{key}", str(value))]


def check_tool_options(*, loop=None, warmup_count=None, device=None, pure_data_type=None) -> None:
    """ais_bench 0.0.2's own argparse rules, applied before anything runs."""
    if loop is not None and loop < 1:
        raise UsageError(f"--loop {loop}: ais_bench takes a positive integer")
    if warmup_count is not None and warmup_count < 0:
        raise UsageError(f"--warmup_count {warmup_count}: ais_bench takes an integer >= 0")
    if device is not None and device not in DEVICE_IDS:
        raise UsageError(f"--device {device}: ais_bench takes a device id in [0, 255]")
    if pure_data_type is not None and pure_data_type not in ("zero", "random"):
        raise UsageError(f"--pure_data_type {pure_data_type!r}: ais_bench takes zero or random")


def throughput_from_output(output: str) -> Optional[float]:
    """The last number of ais_bench's `[INFO] throughput ...: X` line (what ais_bench's own scripts grep)."""
    values = [m.group(1) for m in map(_THROUGHPUT.search, output.splitlines()) if m]
    return float(values[-1]) if values else None


def check_tool_report(output: str, folder: Path, batch_size: int) -> None:
    """What ais_bench printed must match the folder claimed for it and BS files per batch."""
    paths = [m.group(1) for m in map(_OUTPUT_PATH.search, output.splitlines()) if m]
    if paths and Path(paths[-1]).resolve() != Path(folder).resolve():
        raise ToolError(f"ais_bench wrote to {paths[-1]}, not to the folder claimed for it ({folder})")
    packed = [int(m.group(1)) for m in map(_FILES_PER_BATCH.search, output.splitlines()) if m]
    if packed and packed[-1] != batch_size:
        raise ToolError(f"ais_bench packed {packed[-1]} files per batch, not BS {batch_size}, so each output "
                        f"file would hold several samples; its results were discarded")


def _run(argv: List[str]):
    print(f"[ais_bench] {command_line(argv)}", flush=True)
    run = run_streamed(argv)
    if run.returncode != 0:
        errors = [ln.strip() for ln in run.output.splitlines() if "[ERROR]" in ln or "error:" in ln]
        raise ToolError(f"ais_bench failed (exit {run.returncode}): {errors[-1] if errors else 'see its output above'}")
    return run


def run_infer(om, batch_size: int, *, input_dirs: Optional[Sequence] = None, output=DEFAULT_RESULT_DIR,
              outfmt: str = "TXT", output_dirname: Optional[str] = None, loop: Optional[int] = None,
              warmup_count: Optional[int] = None, device: Optional[int] = None,
              python: str = sys.executable) -> AisRun:
    """Accuracy run over the preprocessed folders into a folder claimed here; returns it and the throughput."""
    check_tool_options(loop=loop, warmup_count=warmup_count, device=device)
    check_ready(Path(om), python)
    input_dirs = list(input_dirs or default_inputs())
    for folder in input_dirs:
        if not Path(folder).is_dir():
            raise ToolError(f"{folder}: input folder not found (run bash test/preprocess_data.sh first)")
    check_om_source(Path(om), Path(input_dirs[0]).parent, batch_size)
    check_inputs_fit(Path(om), describe_om(Path(om), device or 0, python), input_dirs, batch_size)
    # Claimed atomically (mkdir) with its .incomplete marker; ais_bench writes into an existing folder.
    folder = create_result_dir(Path(output), output_dirname)
    argv = build_infer_command(om, input_dirs, output, batch_size, outfmt=outfmt, output_dirname=folder.name,
                               loop=loop, warmup_count=warmup_count, device=device, python=python)
    try:
        run = _run(argv)
        check_tool_report(run.output, folder, batch_size)
    except BaseException:
        discard_dir(folder)  # nothing half-written or mis-packed is left to be scored
        summary_path(folder).unlink(missing_ok=True)
        raise
    clear_incomplete(folder)
    throughput, source = None, "printed summary"
    summary_file = summary_path(folder)
    if summary_file.is_file():
        try:
            throughput = float(json.loads(summary_file.read_text(encoding="utf-8"))["throughput"])
            source = str(summary_file)
        except (ValueError, KeyError, TypeError):
            print(f"warning: {summary_file}: no readable throughput; using the printed summary", file=sys.stderr)
    if throughput is None:
        throughput = throughput_from_output(run.output)
    return AisRun(folder, throughput, source)


def run_perf(om, batch_size: int, loop: int = 1000, *, warmup_count: Optional[int] = None,
             device: Optional[int] = None, pure_data_type: Optional[str] = None,
             python: str = sys.executable) -> AisRun:
    """ModelZoo's performance run: pure inference on generated data, `loop` executions."""
    argv = build_perf_command(om, loop, batch_size, warmup_count=warmup_count, device=device,
                              pure_data_type=pure_data_type, python=python)
    check_ready(Path(om), python)
    run = _run(argv)
    throughput = throughput_from_output(run.output)
    if throughput is None:
        raise ToolError("ais_bench printed no throughput line")
    return AisRun(None, throughput, "printed summary")


def _report(run: AisRun) -> None:
    if run.result_dir is not None:
        print(f"[path] ais_bench wrote {run.result_dir} (claimed for it and passed as --output_dirname)")
    shown = f"{run.throughput:.2f}" if run.throughput is not None else "unknown"
    print(f"[ais_bench] throughput: {shown} samples/s (1000*batchsize/NPU_compute_time.mean, from {run.source})")
    if run.result_dir is not None:
        print(f"result folder: {run.result_dir.name}")  # test/run_all.sh reads this line


# ---------------------------------------------------------------- CLI: ais-infer, ais-perf
def _positive(text: str) -> int:
    from tinybert_infer.cli.args import positive_int

    return positive_int(text)


def _non_negative(text: str) -> int:
    from tinybert_infer.cli.args import non_negative_int

    return non_negative_int(text)


def _device(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value not in DEVICE_IDS:
        raise argparse.ArgumentTypeError(f"expected one device id in [0, 255], got {text!r}")
    return value


def _tool_options(p) -> None:
    p.add_argument("--warmup_count", "--warmup-count", type=_non_negative, default=None)
    p.add_argument("--device", "-d", type=_device, default=None, help="NPU device id in [0, 255]")
    p.add_argument("--python", default=sys.executable, help="interpreter that has ais_bench (default: this one)")
    for option in HOST_ONLY_OPTIONS:  # accepted only to be refused with one line (cmd_*), not by argparse
        p.add_argument(option, dest=option[2:], default=None, help=argparse.SUPPRESS)


def _refuse_host_only(args) -> None:
    for option in HOST_ONLY_OPTIONS:
        if getattr(args, option[2:]) is not None:
            raise UsageError(f"{option}: ais_bench has no such option; it applies to the host backends "
                             f"(add --backend NAME to run there)")


def add_command(sub) -> None:
    p = sub.add_parser("ais-infer", help="the real ais_bench on TinyBERT_bsBS.om over bert_bin/ (Ascend)")
    p.add_argument("--batchsize", type=_positive, required=True)
    p.add_argument("--model", "-m", type=Path, default=None, help="OM file (default: TinyBERT_bs<batchsize>.om)")
    p.add_argument("--input", "-i", default=None, help="comma-separated input folders (default: bert_bin/...)")
    p.add_argument("--output", "-o", type=Path, default=Path(DEFAULT_RESULT_DIR))
    p.add_argument("--outfmt", default="TXT", type=str.upper, choices=list(OUTFMTS))
    p.add_argument("--output_dirname", default=None)
    p.add_argument("--loop", "-l", type=_positive, default=None)
    _tool_options(p)
    p.set_defaults(func=cmd_ais_infer)

    q = sub.add_parser("ais-perf", help="ais_bench pure-inference throughput of TinyBERT_bsBS.om (Ascend)")
    q.add_argument("--batchsize", type=_positive, required=True)
    q.add_argument("--model", "-m", type=Path, default=None, help="OM file (default: TinyBERT_bs<batchsize>.om)")
    q.add_argument("--loop", "-l", type=_positive, default=1000)
    q.add_argument("--pure_data_type", choices=["zero", "random"], default=None)
    _tool_options(q)
    q.set_defaults(func=cmd_ais_perf)


def cmd_ais_infer(args) -> int:
    _refuse_host_only(args)
    om = args.model or Path(f"{om_stem(args.batchsize)}.om")
    dirs = [d for d in args.input.split(",") if d] if args.input else None
    run = run_infer(om, args.batchsize, input_dirs=dirs, output=args.output, outfmt=args.outfmt,
                    output_dirname=args.output_dirname, loop=args.loop, warmup_count=args.warmup_count,
                    device=args.device, python=args.python)
    _report(run)
    return 0


def cmd_ais_perf(args) -> int:
    _refuse_host_only(args)
    om = args.model or Path(f"{om_stem(args.batchsize)}.om")
    _report(run_perf(om, args.batchsize, args.loop, warmup_count=args.warmup_count, device=args.device,
                     pure_data_type=args.pure_data_type, python=args.python))
    return 0
