"""Stage 2 (Ascend): TinyBERT_sim_bsBS.onnx -> atc -> TinyBERT_bsBS.om.

The atc command is built from the ONNX graph's own input names and shapes. What atc would only reject
after minutes (missing file, dynamic or mismatched shapes, an opset it does not take, non-int64 inputs)
is checked first. CANN's environment (set_env.sh) is sourced by test/onnx2om.sh, not here.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from tinybert_infer.errors import ExportError, ToolError, UsageError
from tinybert_infer.layout import DEFAULT_OPSET, om_stem, require_model, sim_onnx_name
from tinybert_infer.tools.process import command_line, passthrough, require_tool, run_streamed

# layout.DEFAULT_OPSET (11) is the one every CANN version takes (5.x/6.x: only 11; 7.0: 9-18; 8.0: 11-15; 9.x: 11-18).
ACCEPTED_OPSETS = range(11, 19)
LOG_LEVELS = ("debug", "info", "warning", "error", "null")
INSTALL_HINT = ("install the CANN toolkit and source its environment "
                "(source /usr/local/Ascend/ascend-toolkit/set_env.sh, or set ASCEND_TOOLKIT_HOME); "
                "--dry-run prints the command without running it")
_CHIP = re.compile(r"^[A-Za-z0-9]+$")
# atc's failure summary, its E-codes (E10001, EZ9999, ...) and error-level log lines.
_FAILURE_LINE = re.compile(r"ATC run failed|\bE[0-9A-Z]\d{4}\b|\[ERROR\]")
_SUCCESS_LINE = "ATC run success"


@dataclass
class OnnxInput:
    name: str
    dims: List[Optional[int]]  # None: a dynamic (symbolic or unset) dimension
    elem_type: str             # onnx.TensorProto name, e.g. "INT64"


@dataclass
class OnnxInfo:
    path: Path
    opset: int
    inputs: List[OnnxInput]

    @property
    def is_static(self) -> bool:
        return all(d is not None for i in self.inputs for d in i.dims)


def read_onnx_info(path) -> OnnxInfo:
    """Input names, dims, dtypes and the default-domain opset of an ONNX file (weights not loaded)."""
    import onnx

    path = require_model(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types for a corrupt file
        raise ExportError(f"{path}: not a readable ONNX model ({exc})") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ExportError(f"{path}: no default-domain opset import")
    initializers = {i.name for i in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        ttype = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in ttype.shape.dim]
        inputs.append(OnnxInput(value.name, dims, onnx.TensorProto.DataType.Name(ttype.elem_type)))
    if not inputs:
        raise ExportError(f"{path}: the graph has no inputs")
    return OnnxInfo(path, opset, inputs)


def check_for_atc(info: OnnxInfo, batch_size: int) -> None:
    """Reject now what atc would reject after a long run."""
    path = info.path
    if info.opset not in ACCEPTED_OPSETS:
        raise ExportError(f"{path}: opset {info.opset}; atc takes opset {DEFAULT_OPSET} on every CANN version "
                          f"(re-export with --opset {DEFAULT_OPSET})")
    for inp in info.inputs:
        if inp.elem_type != "INT64":
            raise ExportError(f"{path}: input {inp.name} is {inp.elem_type}; the preprocessed files are int64, "
                              f"so every input must be int64")
        if not inp.dims or any(d is None for d in inp.dims):
            shown = ",".join("?" if d is None else str(d) for d in inp.dims)
            raise ExportError(f"{path}: input {inp.name} has dynamic shape [{shown}]; atc here needs a static "
                              f"model (export it with bash test/pth2onnx.sh {batch_size})")
        if inp.dims[0] != batch_size:
            raise ExportError(f"{path}: input {inp.name} has batch {inp.dims[0]}, but BS is {batch_size}")


def soc_version(chip: str) -> str:
    """`Ascend` + the chip name npu-smi prints (310P3 -> Ascend310P3); a name already prefixed is kept."""
    if not _CHIP.match(chip or ""):
        raise UsageError(f"CHIP must be letters and digits as npu-smi info prints it (e.g. 310P3), got {chip!r}")
    return chip if chip.lower().startswith("ascend") else f"Ascend{chip}"


def input_shape_arg(info: OnnxInfo) -> str:
    return ";".join(f"{i.name}:{','.join(str(d) for d in i.dims)}" for i in info.inputs)


def _option_key(arg: str) -> str:
    return arg.split("=", 1)[0]


def build_atc_command(info: OnnxInfo, chip: str, *, output: str, log: str = "error",
                      extra: Sequence[str] = (), atc: str = "atc") -> List[str]:
    """ModelZoo's TinyBERT atc command; an extra `--key=value` replaces the built option with that key."""
    if log not in LOG_LEVELS:
        raise UsageError(f"--log {log!r}: atc takes one of {', '.join(LOG_LEVELS)}")
    built = [
        "--framework=5",
        f"--model={info.path}",
        f"--output={output}",
        "--input_format=ND",
        f"--input_shape={input_shape_arg(info)}",
        f"--log={log}",
        f"--soc_version={soc_version(chip)}",
        "--optypelist_for_implmode=Gelu",  # ModelZoo: Gelu in its high-performance implementation
        "--op_select_implmode=high_performance",
    ]
    for arg in extra:
        key = _option_key(arg)
        if not key.startswith("--"):
            raise UsageError(f"extra atc option {arg!r}: write it as --key=value")
        if key in ("--model", "--output"):
            raise UsageError(f"extra atc option {arg!r}: use the command's own --model/--output")
        keys = [_option_key(b) for b in built]
        if key in keys:
            built[keys.index(key)] = arg
        else:
            built.append(arg)
    return [atc, *built]


def _om_pattern(output: str) -> re.Pattern:
    # atc may add the OS/arch it targets: <output>_linux_x86_64.om, <output>_linux_aarch64.om
    return re.compile(rf"^{re.escape(Path(output).name)}(_linux_[A-Za-z0-9_]+)?\.om$")


def find_written_om(output: str, since: float) -> Optional[Path]:
    """The .om atc wrote for --output (plain name preferred), ignoring files older than this run."""
    folder = Path(output).parent
    pattern = _om_pattern(output)
    fresh = [p for p in folder.iterdir() if pattern.match(p.name) and p.stat().st_mtime >= since - 1.0] \
        if folder.is_dir() else []
    if not fresh:
        return None
    return sorted(fresh, key=lambda p: (p.name != f"{Path(output).name}.om", -p.stat().st_mtime))[0]


def failure_lines(output: str) -> List[str]:
    return [ln.rstrip() for ln in output.splitlines() if _FAILURE_LINE.search(ln)]


def convert(model: Path, batch_size: int, chip: str, *, output: Optional[str] = None, log: str = "error",
            extra: Sequence[str] = (), dry_run: bool = False, atc_path: Optional[str] = None) -> Optional[Path]:
    """Check the ONNX, run atc, and leave the OM at <output>.om. Returns its path (None for a dry run)."""
    output = output or om_stem(batch_size)
    info = read_onnx_info(model)
    check_for_atc(info, batch_size)
    if info.opset != DEFAULT_OPSET:
        print(f"warning: {model}: opset {info.opset}; CANN 5.x/6.x take only opset {DEFAULT_OPSET} "
              f"and CANN 8.0 at most 15", file=sys.stderr)
    atc = "atc" if dry_run else require_tool("atc", INSTALL_HINT, atc_path)
    argv = build_atc_command(info, chip, output=output, log=log, extra=extra, atc=atc)
    if dry_run:
        print(command_line(["atc", *argv[1:]]))
        return None
    print(f"[atc] {command_line(argv)}", flush=True)
    final = Path(f"{output}.om")
    om_source_path(final).unlink(missing_ok=True)  # whatever atc leaves, no old record vouches for it
    started = time.time()
    run = run_streamed(argv)
    written = find_written_om(output, started)
    if run.returncode != 0 or written is None:
        lines = failure_lines(run.output)
        for line in lines:
            print(f"[atc failure] {line}", file=sys.stderr)
        reason = lines[-1] if lines else ("exit 0 but no .om written" if run.returncode == 0 else "no error lines")
        raise ToolError(f"atc failed (exit {run.returncode}) on {model}: {reason}")
    if written != final:
        os.replace(written, final)  # a suffixed OM runs only on that OS/arch; later stages expect the plain name
        print(f"[atc] wrote {written.name}; renamed to {final.name}")
    write_om_source(final, Path(model))
    print(f"[atc] OM: {final}")
    return final


# ---------------------------------------------------------------- what an OM was compiled from
OM_SOURCE_FORMAT = "tinybert-infer-om-source/1"


def om_source_path(om: Path) -> Path:
    return om.with_name(om.name + ".source")


def write_om_source(om: Path, onnx: Path) -> None:
    """Beside the OM: the ONNX it was compiled from and what that graph's metadata says (network, tokenizer,
    vocabulary, labels). An OM carries none of it, and ais_bench runs whatever OM and inputs it is given: with
    this record, ais-infer refuses an OM left from another network's ONNX and inputs tokenised for another model."""
    from tinybert_infer.fsutil import write_json_atomic
    from tinybert_infer.models.specs import run_model_record

    write_json_atomic(om_source_path(om), {"format": OM_SOURCE_FORMAT, "onnx": str(onnx.resolve()),
                                           **run_model_record(None, onnx)})


def read_om_source(om: Path) -> Optional[dict]:
    """The record write_om_source left, or None (an OM compiled without this project, or a record unreadable)."""
    import json

    try:
        record = json.loads(om_source_path(om).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == OM_SOURCE_FORMAT else None


def check_om_source(om: Path, bin_dir: Path, batch_size: int) -> None:
    """Before ais_bench runs: the OM must still be its ONNX's network (the graph was not exported again from
    another checkpoint since atc ran), and the inputs must be tokenised as that network was trained."""
    from tinybert_infer.data.features import check_folder_tokenizer
    from tinybert_infer.models.specs import METADATA_NETWORK, read_onnx_metadata

    record = read_om_source(om)
    if record is None:
        return
    onnx, network = Path(record.get("onnx", "")), record.get("model_network")
    now = read_onnx_metadata(onnx).get(METADATA_NETWORK) if onnx.is_file() else None
    if network and now and now != network:
        raise ExportError(f"{om}: compiled from {onnx.name} when it held network {network[:19]}, but {onnx.name} is "
                          f"now network {now[:19]}; compile it again (bash test/onnx2om.sh {batch_size} CHIP)")
    check_folder_tokenizer(bin_dir, record)


# ---------------------------------------------------------------- CLI: python -m tinybert_infer om
def add_command(sub) -> None:
    p = sub.add_parser("om", help="TinyBERT_sim_bsBS.onnx -> atc -> TinyBERT_bsBS.om (Ascend)",
                       description="Runs atc; extra atc options go after `--` as --key=value.")
    p.add_argument("--batch_size", "-b", type=int, required=True)
    p.add_argument("--chip", required=True, help="chip name as npu-smi info prints it, e.g. 310P3, 310 (or 710)")
    p.add_argument("--model", type=Path, default=None, help="ONNX file (default: TinyBERT_sim_bs<BS>.onnx)")
    p.add_argument("--output", default=None, help="atc --output stem (default: TinyBERT_bs<BS>)")
    p.add_argument("--log", default="error", choices=LOG_LEVELS, help="atc --log level (default: error)")
    p.add_argument("--atc", default=None, help="path of the atc executable (default: atc on PATH)")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                   help="print the exact atc command and exit")
    p.add_argument("atc_options", nargs=argparse.REMAINDER, help="-- then extra atc options, e.g. -- --precision_mode=force_fp32")
    p.set_defaults(func=cmd_om)


def cmd_om(args) -> int:
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be a positive integer, got {args.batch_size}")
    extra = passthrough(args.atc_options)
    model = args.model or Path(sim_onnx_name(args.batch_size))
    convert(model, args.batch_size, args.chip, output=args.output, log=args.log, extra=extra,
            dry_run=args.dry_run, atc_path=args.atc)
    return 0
