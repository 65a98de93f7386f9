"""Stage 4 on an Ascend host: the real ais_bench tool (`python3 -m ais_bench`) on TinyBERT_bsBS.om.

Builds ModelZoo's exact command (only options ais_bench 0.0.2 parses), runs it, finds the result folder it
created by comparing the output root before and after, and reads the throughput from its
<folder>_summary.json (or, failing that, from its printed summary block). Performance-only runs are
ais_bench's pure inference: `--loop N --batchsize BS` without inputs.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from .errors import ResultError, ToolError, UsageError
from .layout import DEFAULT_BIN_DIR, DEFAULT_RESULT_DIR, INPUT_NAMES, om_stem
from .results import OUTFMTS, summary_path
from .tools import command_line, run_streamed

INSTALL_HINT = ("install ais_bench for this Python (the aclruntime and ais_bench wheels from "
                "Ascend/tools ais-bench_workload) and source /usr/local/Ascend/ascend-toolkit/set_env.sh")
_THROUGHPUT = re.compile(r"throughput\b.*?:\s*([-+0-9.eE]+)\s*$", re.I)


@dataclass
class AisRun:
    result_dir: Optional[Path]
    throughput: Optional[float]
    source: str  # where the throughput was read


def ais_bench_available(python: str = sys.executable) -> bool:
    """Whether `python -m ais_bench` can import the tool (the test scripts make the same check)."""
    if python == sys.executable:
        return importlib.util.find_spec("ais_bench") is not None
    return subprocess.run([python, "-c", "import ais_bench"], capture_output=True).returncode == 0


def default_inputs(bin_dir=DEFAULT_BIN_DIR) -> List[str]:
    return [str(Path(bin_dir) / name) for name in INPUT_NAMES]


def build_infer_command(om, input_dirs: Sequence, output, batch_size: int, *, outfmt: str = "TXT",
                        output_dirname: Optional[str] = None, loop: Optional[int] = None,
                        warmup_count: Optional[int] = None, device: Optional[int] = None,
                        python: str = sys.executable) -> List[str]:
    """ModelZoo's TinyBERT command; optional options only when asked for (all exist in ais_bench 0.0.2)."""
    if outfmt.upper() not in OUTFMTS:
        raise UsageError(f"--outfmt {outfmt!r}: use one of {', '.join(OUTFMTS)}")
    argv = [python, "-m", "ais_bench", "--model", str(om), "--input", ",".join(str(d) for d in input_dirs),
            "--output", str(output), "--outfmt", outfmt.upper(), "--batchsize", str(batch_size)]
    for flag, value in (("--output_dirname", output_dirname), ("--loop", loop), ("--warmup_count", warmup_count),
                        ("--device", device)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def build_perf_command(om, loop: int, batch_size: int, *, python: str = sys.executable) -> List[str]:
    return [python, "-m", "ais_bench", "--model", str(om), "--loop", str(loop), "--batchsize", str(batch_size)]


def throughput_from_output(output: str) -> Optional[float]:
    """The last number of ais_bench's `[INFO] throughput ...: X` line (what ais_bench's own scripts grep)."""
    values = [m.group(1) for m in map(_THROUGHPUT.search, output.splitlines()) if m]
    return float(values[-1]) if values else None


def _folders(root: Path) -> set:
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def new_result_folder(root: Path, before: set, output_dirname: Optional[str]) -> Path:
    if output_dirname is not None:
        folder = root / output_dirname
        if folder.is_dir():
            return folder
        raise ToolError(f"ais_bench exited 0 but did not create {folder}")
    created = sorted(_folders(root) - before)
    if len(created) != 1:
        raise ToolError(f"ais_bench exited 0 but created {len(created)} new folders in {root} "
                        f"({', '.join(created) or 'none'}); expected one")
    return root / created[0]


def _check_tool(om: Path, python: str) -> None:
    if not Path(om).is_file():
        raise ToolError(f"{om}: OM model not found (convert it first: bash test/onnx2om.sh BS CHIP)")
    if not ais_bench_available(python):
        raise ToolError(f"ais_bench is not importable by {python}: {INSTALL_HINT}")


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
    """Accuracy run over the preprocessed folders; returns the folder ais_bench created and its throughput."""
    _check_tool(Path(om), python)
    input_dirs = list(input_dirs or default_inputs())
    for folder in input_dirs:
        if not Path(folder).is_dir():
            raise ToolError(f"{folder}: input folder not found (run bash test/preprocess_data.sh first)")
    root = Path(output)
    if output_dirname is not None and ((root / output_dirname).exists() or summary_path(root / output_dirname).exists()):
        # ais_bench would overwrite it; results are never overwritten here.
        raise ResultError(f"{root / output_dirname}: already exists (pick another --output_dirname)")
    before = _folders(root)
    argv = build_infer_command(om, input_dirs, output, batch_size, outfmt=outfmt, output_dirname=output_dirname,
                               loop=loop, warmup_count=warmup_count, device=device, python=python)
    run = _run(argv)
    folder = new_result_folder(root, before, output_dirname)
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


def run_perf(om, batch_size: int, loop: int = 1000, *, python: str = sys.executable) -> AisRun:
    """ModelZoo's performance run: pure inference on generated data, `loop` executions."""
    _check_tool(Path(om), python)
    run = _run(build_perf_command(om, loop, batch_size, python=python))
    throughput = throughput_from_output(run.output)
    if throughput is None:
        raise ToolError("ais_bench printed no throughput line")
    return AisRun(None, throughput, "printed summary")


def _report(run: AisRun) -> None:
    if run.result_dir is not None:
        print(f"[path] ais_bench created {run.result_dir}")
    shown = f"{run.throughput:.2f}" if run.throughput is not None else "unknown"
    print(f"[ais_bench] throughput: {shown} samples/s (1000*batchsize/NPU_compute_time.mean, from {run.source})")
    if run.result_dir is not None:
        print(f"result folder: {run.result_dir.name}")  # test/run_all.sh reads this line


# ---------------------------------------------------------------- CLI: ais-infer, ais-perf
def _positive(text: str) -> int:
    from .cli import positive_int

    return positive_int(text)


def add_command(sub) -> None:
    p = sub.add_parser("ais-infer", help="the real ais_bench on TinyBERT_bsBS.om over bert_bin/ (Ascend)")
    p.add_argument("--batchsize", type=_positive, required=True)
    p.add_argument("--model", "-m", type=Path, default=None, help="OM file (default: TinyBERT_bs<batchsize>.om)")
    p.add_argument("--input", "-i", default=None, help="comma-separated input folders (default: bert_bin/...)")
    p.add_argument("--output", "-o", type=Path, default=Path(DEFAULT_RESULT_DIR))
    p.add_argument("--outfmt", default="TXT", type=str.upper, choices=list(OUTFMTS))
    p.add_argument("--output_dirname", default=None)
    p.add_argument("--loop", "-l", type=_positive, default=None)
    p.add_argument("--warmup_count", "--warmup-count", type=int, default=None)
    p.add_argument("--device", "-d", type=int, default=None, help="NPU device id")
    p.add_argument("--python", default=sys.executable, help="interpreter that has ais_bench (default: this one)")
    p.set_defaults(func=cmd_ais_infer)

    q = sub.add_parser("ais-perf", help="ais_bench pure-inference throughput of TinyBERT_bsBS.om (Ascend)")
    q.add_argument("--batchsize", type=_positive, required=True)
    q.add_argument("--model", "-m", type=Path, default=None, help="OM file (default: TinyBERT_bs<batchsize>.om)")
    q.add_argument("--loop", "-l", type=_positive, default=1000)
    q.add_argument("--python", default=sys.executable)
    q.set_defaults(func=cmd_ais_perf)


def cmd_ais_infer(args) -> int:
    om = args.model or Path(f"{om_stem(args.batchsize)}.om")
    dirs = [d for d in args.input.split(",") if d] if args.input else None
    run = run_infer(om, args.batchsize, input_dirs=dirs, output=args.output, outfmt=args.outfmt,
                    output_dirname=args.output_dirname, loop=args.loop, warmup_count=args.warmup_count,
                    device=args.device, python=args.python)
    _report(run)
    return 0


def cmd_ais_perf(args) -> int:
    om = args.model or Path(f"{om_stem(args.batchsize)}.om")
    _report(run_perf(om, args.batchsize, args.loop, python=args.python))
    return 0
