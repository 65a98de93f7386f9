"""ais_bench's result layout, written and read in one place.

    <root>/<YYYY_MM_DD-HH_MM_SS or --output_dirname>/input<i>_0.{txt,bin,npy}
    <root>/<same name>_summary.json

TXT is ais_bench's format: one row per sample, each value printed with %f and followed by a space.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tinybert_infer.errors import ResultError
from tinybert_infer.fsutil import write_json_atomic

OUTFMTS = ("TXT", "BIN", "NPY")
INCOMPLETE_MARKER = ".incomplete"  # present while a run of ours is writing; removed after the summary
TIMESTAMP_FORMAT = "%Y_%m_%d-%H_%M_%S"
_SAFE_DIRNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def summary_path(result_dir: Path) -> Path:
    result_dir = Path(result_dir)
    return result_dir.parent / f"{result_dir.name}_summary.json"


def metrics_path(result_dir: Path) -> Path:
    result_dir = Path(result_dir)
    return result_dir.parent / f"{result_dir.name}_metrics.json"


def predictions_path(result_dir: Path) -> Path:
    result_dir = Path(result_dir)
    return result_dir.parent / f"{result_dir.name}_predictions.tsv"


def _claim(folder: Path) -> bool:
    """Create folder (and its incomplete marker) only if neither it nor its summary exists yet."""
    if summary_path(folder).exists():
        return False
    try:
        folder.mkdir()
    except FileExistsError:
        return False
    (folder / INCOMPLETE_MARKER).write_text(f"pid {os.getpid()}\n")
    return True


def create_result_dir(root, output_dirname: Optional[str] = None, clock=time.time) -> Path:
    """A new result folder; never an existing one. Same-second runs wait for the next free timestamp."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if output_dirname is not None:
        if not _SAFE_DIRNAME.match(output_dirname) or output_dirname in (".", ".."):
            raise ResultError(f"--output_dirname {output_dirname!r}: use a plain folder name (letters, digits, . _ -)")
        folder = root / output_dirname
        if not _claim(folder):
            raise ResultError(f"{folder}: already exists; results are never overwritten (pick another --output_dirname)")
        return folder
    for _ in range(120):
        folder = root / time.strftime(TIMESTAMP_FORMAT, time.localtime(clock()))
        if _claim(folder):
            return folder
        time.sleep(1.0 - math.modf(clock())[0] + 0.001)  # keep ais_bench's exact name format: next second
    raise ResultError(f"{root}: could not find a free timestamped folder name")


def mark_complete(result_dir: Path, summary: dict) -> None:
    write_json_atomic(summary_path(result_dir), summary)
    clear_incomplete(result_dir)


def clear_incomplete(result_dir: Path) -> None:
    """The folder is complete and checked: readers may now score it."""
    (Path(result_dir) / INCOMPLETE_MARKER).unlink(missing_ok=True)


def format_txt(array: np.ndarray) -> bytes:
    rows = np.asarray(array).reshape(-1, np.asarray(array).shape[-1] if np.ndim(array) else 1)
    fmt = "%f" if rows.dtype.kind == "f" else "%d"
    return "".join("".join(f"{fmt % v} " for v in row) + "\n" for row in rows).encode()


def write_output(path: Path, array: np.ndarray, outfmt: str) -> None:
    """One output slice in ais_bench's format, written straight into place: its folder carries the
    .incomplete marker until every file is written (mark_complete), which is what readers check, so a
    per-file temporary + rename would only cost time. "x": an existing file is never overwritten."""
    outfmt = outfmt.upper()
    if outfmt == "TXT":
        data = format_txt(array)
    elif outfmt == "BIN":
        data = np.ascontiguousarray(array).tobytes()
    elif outfmt == "NPY":
        buffer = io.BytesIO()
        np.save(buffer, array)
        data = buffer.getvalue()
    else:
        raise ResultError(f"--outfmt {outfmt!r}: use one of {', '.join(OUTFMTS)}")
    with open(path, "xb") as handle:
        handle.write(data)


# Several rows in one sample's file: what ais_bench writes when it packs files per batch != BS.
_PACKED_HINT = " (several samples in one file: ais_bench packed files per batch != BS; check the inputs' dtype)"


def read_output(path: Path, width: Optional[int] = None) -> np.ndarray:
    """The logits of one sample from a .txt, float32 .bin or .npy output file; a file holding more than one
    row (or, with width, more values than one sample has) is refused, never read as its first row."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            text = path.read_bytes().decode("ascii")
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if not lines:
                raise ResultError(f"{path}: empty output file")
            if len(lines) != 1:
                raise ResultError(f"{path}: {len(lines)} rows, expected one sample's{_PACKED_HINT}")
            try:
                values = np.array([float(tok) for tok in lines[0].split()], dtype=np.float64)
            except ValueError:
                raise ResultError(f"{path}: unparsable number in {lines[0][:60]!r}") from None
        elif suffix == ".bin":
            with np.errstate(all="ignore"):  # NaN/inf get the one-line error below, not a RuntimeWarning
                values = np.fromfile(path, dtype=np.float32).astype(np.float64)
        elif suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.dtype.kind not in "fiu":
                raise ResultError(f"{path}: non-numeric array (dtype {arr.dtype})")
            if arr.size == 0:
                values = np.empty(0)  # refused below as empty
            else:
                rows = arr.reshape(-1, arr.shape[-1] if arr.ndim else 1)
                if rows.shape[0] != 1:
                    raise ResultError(f"{path}: {rows.shape[0]} rows, expected one sample's{_PACKED_HINT}")
                with np.errstate(all="ignore"):
                    values = rows[0].astype(np.float64)
        else:
            raise ResultError(f"{path}: unknown output format (expected .txt, .bin or .npy)")
    except UnicodeDecodeError:
        raise ResultError(f"{path}: not a text file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ResultError(f"{path}: unreadable output file ({exc})") from None
    if values.size == 0:
        raise ResultError(f"{path}: no values (empty output)")
    if width is not None and values.size != width:
        packed = _PACKED_HINT if values.size > width and values.size % width == 0 else ""
        raise ResultError(f"{path}: {values.size} values, expected {width} (one per label){packed}")
    if not np.all(np.isfinite(values)):
        raise ResultError(f"{path}: non-finite value in {values.tolist()}")
    return values


def find_output_file(result_dir: Path, stem: str, output_index: int = 0) -> Optional[Path]:
    for ext in ("txt", "bin", "npy"):
        candidate = result_dir / f"{stem}_{output_index}.{ext}"
        if candidate.is_file():
            return candidate
    return None


def check_complete(result_dir: Path) -> None:
    result_dir = Path(result_dir)
    if not result_dir.is_dir():
        raise ResultError(f"{result_dir}: result folder not found")
    if (result_dir / INCOMPLETE_MARKER).exists():
        raise ResultError(f"{result_dir}: incomplete run (interrupted or still running); run inference again")


def read_logits(result_dir, stems: Sequence[str], width: int) -> np.ndarray:
    """Logits [len(stems), width], matched by file name; refuses any missing or bad sample."""
    result_dir = Path(result_dir)
    check_complete(result_dir)
    missing = [f"{stem}_0.txt" for stem in stems if find_output_file(result_dir, stem) is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... ({len(missing)} missing in all)" if len(missing) > 5 else "")
        raise ResultError(f"{result_dir}: missing output file(s) {shown}; refusing to score a subset")
    logits = np.empty((len(stems), width), dtype=np.float64)
    for row, stem in enumerate(stems):
        logits[row] = read_output(find_output_file(result_dir, stem), width)
    return logits


def latency_stats(times_ms: Sequence[float]) -> dict:
    arr = np.asarray(times_ms, dtype=np.float64)
    if arr.size == 0:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0, "percentile(99%)": 0.0, "count": 0}
    return {
        "min": float(arr.min()), "max": float(arr.max()), "mean": float(arr.mean()),
        "median": float(np.median(arr)), "percentile(99%)": float(np.percentile(arr, 99)), "count": int(arr.size),
    }


def read_summary(result_dir) -> Optional[dict]:
    path = summary_path(result_dir)
    legacy = Path(result_dir) / "sumary.json"  # ais_infer before Nov 2022 wrote it inside the folder
    for candidate in (path, legacy):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ResultError(f"{candidate}: unreadable summary ({exc})") from None
    return None


_TOP_LEVEL_LINE = re.compile(r'^  "(?P<key>[^"]+)": (?P<value>.*?),?$')


def read_summary_value(result_dir, key: str):
    """One top-level value of a summary; None when absent. Ours (write_json_atomic: each top-level key on
    its own line) is read line by line so a 200,000-sample filesinfo is never loaded; ais_bench's own
    summary is one line of JSON (json.dump), read whole."""
    path = summary_path(result_dir)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
        if first.strip() not in ("{", ""):  # one-line JSON: ais_bench's
            try:
                value = json.loads(first + handle.read())
            except json.JSONDecodeError as exc:
                raise ResultError(f"{path}: unreadable summary ({exc})") from None
            return value.get(key) if isinstance(value, dict) else None
        for line in handle:
            match = _TOP_LEVEL_LINE.match(line.rstrip("\n"))
            if match and match["key"] == key:
                try:
                    return json.loads(match["value"])
                except json.JSONDecodeError:
                    return None  # a multi-line value: not one this is used for
    return None


def format_summary_block(summary: dict) -> str:
    """ais_bench's printed performance summary."""
    t = summary["NPU_compute_time"]
    bs = summary.get("batchsize", 1)
    return "\n".join([
        "[INFO] -----------------Performance Summary------------------",
        f"[INFO] NPU_compute_time (ms): min = {t['min']}, max = {t['max']}, mean = {t['mean']}, "
        f"median = {t['median']}, percentile(99%) = {t['percentile(99%)']}",
        f"[INFO] throughput 1000*batchsize.mean({bs})/NPU_compute_time.mean({t['mean']}): {summary['throughput']}",
        "[INFO] ------------------------------------------------------",
    ])
