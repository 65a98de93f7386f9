"""GPU throughput with NVIDIA's trtexec on TinyBERT_sim_bsBS.onnx, as ModelZoo's T4 numbers are measured.

Flags are chosen for the installed TensorRT: no --shapes for a static model (an error since TRT 8.0),
--memPoolSize=workspace:N from 8.4 on (--workspace is gone in 10.0), --fp16 only before 11.0. The
performance summary is parsed (8.x-11.x one-line format and TRT 7's multi-line one) and reported as
ModelZoo's fps = 1000 * BS / mean GPU compute time, next to qps * BS.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from tinybert_infer.errors import ToolError, UsageError
from tinybert_infer.layout import SEQ_LEN, sim_onnx_name
from tinybert_infer.tools.process import command_line, passthrough, require_tool, run_streamed

Version = Tuple[int, int, int]
DEFAULT_WORKSPACE_MIB = 5000  # ModelZoo's TinyBERT README value
INSTALL_HINT = ("install TensorRT and put its bin/ on PATH (e.g. export PATH=/usr/src/tensorrt/bin:$PATH), "
                "or pass --trtexec; --dry-run prints the command without running it")

_TAG = re.compile(r"\[TensorRT v(\d+)\]")
_VERSION_LINE = re.compile(r"TensorRT version:\s*(\d+)\.(\d+)\.(\d+)")
_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")  # "[06/10/2023-10:00:00] [I] " (TRT 7 sometimes repeats it)
_STAT = re.compile(r"([A-Za-z]+(?:\(\d+%\))?)\s*=\s*([-+0-9.eE]+)\s*ms")


def parse_version(text: str) -> Optional[Version]:
    """From `TensorRT version: 8.6.1` or the `[TensorRT v8601]` / `[TensorRT v100800]` tag."""
    match = _VERSION_LINE.search(text)
    if match:
        return tuple(int(g) for g in match.groups())  # type: ignore[return-value]
    match = _TAG.search(text)
    if match:
        n = int(match.group(1))
        if n >= 100000:  # TRT 10+: major*10000 + minor*100 + patch
            return n // 10000, n // 100 % 100, n % 100
        return n // 1000, n // 100 % 10, n % 100  # TRT 8.x: major*1000 + minor*100 + patch
    return None


def probe(trtexec: str) -> Tuple[Optional[Version], str]:
    """The installed version and its --help text (which lists the options it parses)."""
    try:
        proc = subprocess.run([trtexec, "--help"], capture_output=True, text=True, errors="replace", timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"{trtexec} --help failed: {exc}") from None
    text = proc.stdout + proc.stderr
    return parse_version(text), text


def _mentions(help_text: str, flag: str) -> bool:
    return re.search(rf"(^|\s){re.escape(flag)}(\b|=)", help_text, re.M) is not None


def workspace_flag(version: Optional[Version], help_text: str, mib: int) -> str:
    if version is not None:
        modern = version >= (8, 4)
    else:
        modern = _mentions(help_text, "--memPoolSize") or not _mentions(help_text, "--workspace")
    return f"--memPoolSize=workspace:{mib}" if modern else f"--workspace={mib}"


def fp16_accepted(version: Optional[Version], help_text: str) -> bool:
    if version is not None:
        return version < (11, 0, 0)  # TRT 11 networks are strongly typed: fp16 needs an fp16 ONNX
    return _mentions(help_text, "--fp16")


def shapes_flag(info, batch_size: int) -> Optional[str]:
    """--shapes only for a dynamic model: TRT >= 8.0 rejects it for a static one."""
    if info.is_static:
        return None
    dims = lambda inp: "x".join(str(d if d is not None else (batch_size if k == 0 else SEQ_LEN))
                                for k, d in enumerate(inp.dims))
    return "--shapes=" + ",".join(f"{inp.name}:{dims(inp)}" for inp in info.inputs)


def build_trtexec_command(model: Path, info, batch_size: int, version: Optional[Version], help_text: str, *,
                          workspace_mib: int = DEFAULT_WORKSPACE_MIB, fp16: bool = False, threads: bool = True,
                          extra: Sequence[str] = (), trtexec: str = "trtexec") -> List[str]:
    argv = [trtexec, f"--onnx={model}", workspace_flag(version, help_text, workspace_mib)]
    shapes = shapes_flag(info, batch_size)
    if shapes:
        argv.append(shapes)
    if threads:
        argv.append("--threads")  # ModelZoo's T4 commands drive inference from worker threads
    if fp16:
        if not fp16_accepted(version, help_text):
            shown = ".".join(map(str, version)) if version else "this TensorRT"
            raise UsageError(f"TensorRT {shown} has no --fp16 (networks are strongly typed); "
                             f"run fp32 or give it an fp16 ONNX")
        argv.append("--fp16")
    argv.extend(extra)
    return argv


@dataclass
class PerfSummary:
    summary_format: str                 # "trt8+" or "trt7"
    gpu_compute_ms: dict                # min/max/mean/median/percentile(..) in ms
    throughput_qps: Optional[float]
    lines: List[str] = field(default_factory=list)  # the summary block as printed

    def fps(self, batch_size: int) -> float:
        return 1000.0 * batch_size / self.gpu_compute_ms["mean"]


def _strip(line: str) -> str:
    return _PREFIX.sub("", line.strip())


def _parse_trt8(lines: List[str]) -> Optional[PerfSummary]:
    start = next((i for i, ln in enumerate(lines) if "=== Performance summary ===" in ln), None)
    if start is None:
        return None
    block, gpu, qps = [], {}, None
    for raw in lines[start:]:
        line = _strip(raw)
        if raw is not lines[start] and (line.startswith("===") or raw.startswith("&&&&")):
            break
        block.append(raw.rstrip())
        if line.startswith("Throughput:"):
            qps = float(line.split()[1])
        elif line.startswith("GPU Compute Time:"):
            gpu = {k: float(v) for k, v in _STAT.findall(line)}
    return PerfSummary("trt8+", gpu, qps, block) if "mean" in gpu else None


def _parse_trt7(lines: List[str]) -> Optional[PerfSummary]:
    stripped = [_strip(ln) for ln in lines]
    if "GPU Compute" not in stripped:
        return None
    start = stripped.index("Host Latency") if "Host Latency" in stripped else stripped.index("GPU Compute")
    gpu_at = stripped.index("GPU Compute")
    gpu, qps, block = {}, None, []
    for line, raw in zip(stripped[start:], lines[start:]):
        if raw.startswith("&&&&"):
            break
        block.append(raw.rstrip())
        if line.startswith("throughput:"):
            qps = float(line.split()[1])
    for line in stripped[gpu_at + 1:]:
        match = re.match(r"^(min|max|mean|median|percentile):\s*([-+0-9.eE]+)\s*ms(?: at (\d+)%)?", line)
        if not match:
            break
        key = f"percentile({match.group(3)}%)" if match.group(1) == "percentile" else match.group(1)
        gpu[key] = float(match.group(2))
    return PerfSummary("trt7", gpu, qps, block) if "mean" in gpu else None


def parse_summary(text: str) -> Optional[PerfSummary]:
    lines = text.splitlines()
    return _parse_trt8(lines) or _parse_trt7(lines)


def format_result(summary: PerfSummary, batch_size: int, version: Optional[Version], fp16: bool) -> str:
    shown = ".".join(map(str, version)) if version else "unknown"
    gpu_mean = summary.gpu_compute_ms["mean"]
    lines = [f"[trtexec] TensorRT {shown}, bs {batch_size}, {'fp16' if fp16 else 'fp32'}",
             f"fps (1000*BS/mean GPU compute time, ModelZoo): {summary.fps(batch_size):.2f}  "
             f"[GPU Compute Time mean = {gpu_mean:g} ms]"]
    if summary.throughput_qps is not None:
        lines.append(f"qps*BS (host walltime throughput): {summary.throughput_qps * batch_size:.2f}  "
                     f"[Throughput = {summary.throughput_qps:g} qps]")
    return "\n".join(lines)


def run_perf(model: Path, batch_size: int, *, workspace_mib: int = DEFAULT_WORKSPACE_MIB, fp16: bool = False,
             threads: bool = True, extra: Sequence[str] = (), dry_run: bool = False,
             trtexec_path: Optional[str] = None, assume_version: Optional[Version] = None,
             json_path: Optional[Path] = None, echo: bool = False) -> Optional[dict]:
    from tinybert_infer.tools.atc import read_onnx_info

    info = read_onnx_info(model)
    if info.inputs[0].dims and info.inputs[0].dims[0] not in (None, batch_size):
        raise UsageError(f"{model}: batch {info.inputs[0].dims[0]}, but BS is {batch_size}")
    if dry_run and not trtexec_path and shutil.which("trtexec") is None:
        trtexec, version, help_text = "trtexec", assume_version, ""
        if version is None:
            print("# TensorRT version unknown here: flags for TensorRT 8.4-10.x (pass --trt_version to choose)",
                  file=sys.stderr)
    else:
        trtexec = require_tool("trtexec", INSTALL_HINT, trtexec_path)
        version, help_text = probe(trtexec)
        version = assume_version or version
        if version is None:
            print("warning: could not read the TensorRT version from trtexec --help; choosing flags from its "
                  "option list (pass --trt_version to override)", file=sys.stderr)
    argv = build_trtexec_command(model, info, batch_size, version, help_text, workspace_mib=workspace_mib,
                                 fp16=fp16, threads=threads, extra=extra, trtexec=trtexec)
    if dry_run:
        print(command_line(["trtexec", *argv[1:]]))
        return None
    print(f"[trtexec] {command_line(argv)}", flush=True)
    run = run_streamed(argv, echo=echo)
    version = version or parse_version(run.output)
    summary = parse_summary(run.output)
    if run.returncode != 0 or summary is None or "&&&& FAILED" in run.output:
        errors = [ln.rstrip() for ln in run.output.splitlines() if "[E]" in ln or "Unknown option" in ln]
        for line in errors or run.output.splitlines()[-15:]:
            print(f"[trtexec failure] {line}", file=sys.stderr)
        reason = _strip(errors[0]) if errors else ("no performance summary in its output" if run.returncode == 0
                                                   else "see the lines above")
        raise ToolError(f"trtexec failed (exit {run.returncode}) on {model}: {reason}")
    if not echo:
        print("\n".join(summary.lines))
    print(format_result(summary, batch_size, version, fp16))
    result = {
        "tool": "trtexec", "tensorrt": ".".join(map(str, version)) if version else None, "batch_size": batch_size,
        "precision": "fp16" if fp16 else "fp32", "command": argv, "summary_format": summary.summary_format,
        "gpu_compute_time_ms": summary.gpu_compute_ms, "throughput_qps": summary.throughput_qps,
        "fps": summary.fps(batch_size),
        "qps_x_bs": summary.throughput_qps * batch_size if summary.throughput_qps is not None else None,
    }
    if json_path is not None:
        from tinybert_infer.fsutil import write_json_atomic

        write_json_atomic(Path(json_path), result)
    return result


def _version_arg(text: str) -> Version:
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a version like 8.6.1 or 10, got {text!r}")
    return tuple(int(g or 0) for g in match.groups())  # type: ignore[return-value]


# ---------------------------------------------------------------- CLI: python -m tinybert_infer trt-perf
def add_command(sub) -> None:
    p = sub.add_parser("trt-perf", help="trtexec throughput of TinyBERT_sim_bsBS.onnx (NVIDIA GPU)",
                       description="Extra trtexec options go after `--`.")
    p.add_argument("--batch_size", "-b", type=int, required=True)
    p.add_argument("--model", type=Path, default=None, help="ONNX file (default: TinyBERT_sim_bs<BS>.onnx)")
    p.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MIB, help="builder workspace, MiB")
    p.add_argument("--fp16", action="store_true", help="allow fp16 kernels (not on TensorRT 11+)")
    p.add_argument("--no_threads", action="store_true", help="leave out --threads")
    p.add_argument("--trtexec", default=None, help="path of trtexec (default: trtexec on PATH)")
    p.add_argument("--trt_version", type=_version_arg, default=None,
                   help="TensorRT version to choose flags for (default: read from trtexec)")
    p.add_argument("--json", type=Path, default=None, help="also write the parsed result here")
    p.add_argument("--verbose", action="store_true", help="echo trtexec's whole output")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                   help="print the exact trtexec command and exit")
    p.add_argument("trtexec_options", nargs=argparse.REMAINDER, help="-- then extra trtexec options")
    p.set_defaults(func=cmd_trt_perf)


def cmd_trt_perf(args) -> int:
    if args.batch_size < 1 or args.workspace < 1:
        raise UsageError("--batch_size and --workspace must be positive integers")
    extra = passthrough(args.trtexec_options)
    model = args.model or Path(sim_onnx_name(args.batch_size))
    run_perf(model, args.batch_size, workspace_mib=args.workspace, fp16=args.fp16, threads=not args.no_threads,
             extra=extra, dry_run=args.dry_run, trtexec_path=args.trtexec, assume_version=args.trt_version,
             json_path=args.json, echo=args.verbose)
    return 0

