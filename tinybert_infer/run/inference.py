"""The ais_bench feeding loop, for backends that run on this host.

Files of each input folder are taken in natural order; N = the model's batch files are concatenated per
batch; a short last batch is padded with copies of its first file and the padded slots' outputs are
dropped; each output slice is written as <input0 stem>_0.<fmt>. Compute time is measured per execution
and summarised with ais_bench's keys.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tinybert_infer.backends.base import Backend
from tinybert_infer.data.features import folder_dtype, list_input_files, path_prefix, read_samples
from tinybert_infer.errors import DataError, PipelineError, UsageError
from tinybert_infer.fsutil import JsonSpool, discard_dir
from tinybert_infer.layout import SEQ_LEN, output_file_name
from tinybert_infer.progress import progress
from tinybert_infer.run.results import OUTFMTS, create_result_dir, latency_stats, mark_complete, write_output


@dataclass
class RunReport:
    result_dir: Optional[Path]
    summary: dict  # the summary file's content less filesinfo, whose per-sample records stay on disk


def iter_batches(num_files: int, batch: int) -> Iterator[List[Optional[int]]]:
    """Index chunks of `batch`; None marks a padding slot in the last chunk (ais_bench's placeholder)."""
    for start in range(0, num_files, batch):
        chunk: List[Optional[int]] = list(range(start, min(start + batch, num_files)))
        yield chunk + [None] * (batch - len(chunk))


def _load_batch(folder: Path, names: Sequence[str], chunk: Sequence[Optional[int]], seq_len: int,
                dtype: str) -> np.ndarray:
    first = chunk[0]
    return read_samples(folder, [names[first if i is None else i] for i in chunk], seq_len, dtype)


def resolve_batch_size(backend: Backend, batch_size: Optional[int]) -> int:
    if backend.batch_size is not None:
        if batch_size is not None and batch_size != backend.batch_size:
            # ais_bench only uses --batchsize for the throughput figure; a mismatch is a user error here.
            raise UsageError(f"--batchsize {batch_size} does not match the model's batch {backend.batch_size}")
        return backend.batch_size
    if batch_size is None or batch_size < 1:
        raise UsageError("this backend has no static batch: give --batchsize")
    return batch_size


def _timed(fn: Callable, times: list):
    start = time.perf_counter()
    out = fn()
    times.append((time.perf_counter() - start) * 1000.0)
    return out


@dataclass
class Slot:
    """A real sample's row in a batch's output (padding/filler rows have none)."""

    row: int
    index: int          # the sample's number: ais_bench's filesinfo key
    input_name: str     # its input-0 file name, whose stem names the output file
    infiles: List[str]


def check_finite_outputs(logits: np.ndarray, slots: Sequence[Slot]) -> None:
    """NaN/inf logits score as label 0 without a sign: the run stops at the first one (its folder goes)."""
    for slot in slots:
        row = np.asarray(logits[slot.row])
        if not np.all(np.isfinite(row)):
            raise PipelineError(f"{slot.infiles[0]}: non-finite model output {row.tolist()} for sample "
                                f"{slot.index}; the model is broken (no results were written)")


def check_run_options(outfmt: str, loop: int, warmup_count: int) -> str:
    outfmt = outfmt.upper()
    if outfmt not in OUTFMTS:
        raise UsageError(f"--outfmt {outfmt!r}: use one of {', '.join(OUTFMTS)}")
    if loop < 1 or warmup_count < 0:
        raise UsageError("--loop must be >= 1 and --warmup_count >= 0")
    return outfmt


def _run_all(backend: Backend, batches, loop: int, times: list):
    """(slots, logits) per batch; batch times (ms) appended to times. ais_bench's --loop reruns each batch, so
    only loop 1 goes through the backend's pipelined path (several batches in flight where it has streams)."""
    if loop > 1:
        for feeds, slots in batches:
            for _ in range(loop):
                logits = _timed(lambda: backend.run(feeds), times)
            yield slots, logits
        return
    for slots, logits, ms in backend.run_pipelined((feeds, slots) for feeds, slots in batches):
        times.append(ms)
        yield slots, logits


def execute(backend: Backend, batches: Iterator[Tuple[dict, List[Slot]]], output_root, *, total: int, desc: str,
            summarize: Callable[[list], dict], outfmt: str = "TXT", output_dirname: Optional[str] = None,
            loop: int = 1, warmup_count: int = 1, show_progress: bool = True) -> RunReport:
    """What every feeding mode shares: run (feeds, slots) batches and write one ais_bench result folder.

    The first batch is read and run before the result folder exists, so bad inputs leave nothing behind;
    a failed or interrupted (Ctrl-C) run removes its folder; after kill -9 the .incomplete marker stays.
    summarize(times_ms) gives the summary (less filesinfo) once every batch has run.
    """
    first = next(batches)
    # ais_bench's warm-up keeps a cold start out of the timed loop. A backend that has already run this shape (an
    # open plan serving its next job) is warm: running it again only adds a batch, on one stream while the others
    # idle (8 % of the job's wall time: shared checkpoint, SST-2 dev, int8 packed, 2 streams, AMX host).
    warmup_runs = 0 if backend.warm_for(first[0]) else warmup_count
    for _ in range(warmup_runs):
        backend.run(first[0])
    result_dir = create_result_dir(output_root, output_dirname)
    times: list = []
    out_dir = path_prefix(result_dir)
    # filesinfo (ais_bench's per-sample record) is spooled to disk: it would otherwise be ~1 KB per sample.
    with JsonSpool(keyed=True, directory=result_dir.parent) as filesinfo:
        try:
            with progress(total=total, desc=desc, unit="sample", enabled=show_progress) as bar:
                for slots, logits in _run_all(backend, itertools.chain([first], batches), loop, times):
                    check_finite_outputs(logits, slots)
                    for slot in slots:
                        out_path = out_dir + output_file_name(slot.input_name, 0, outfmt)
                        write_output(out_path, logits[slot.row:slot.row + 1], outfmt)
                        filesinfo.add({"infiles": slot.infiles, "outfiles": [out_path]}, key=slot.index)
                    bar.update(len(slots))
        except BaseException:
            discard_dir(result_dir)
            raise
        backend.warm = True
        summary = summarize(times)
        summary["warmup_runs"] = warmup_runs
        summary["filesinfo"] = filesinfo  # keeps ais_bench's first place in the file
        mark_complete(result_dir, summary)
    del summary["filesinfo"]
    return RunReport(result_dir, summary)


def run_files(backend: Backend, input_dirs: Sequence, output_root, *, batch_size: Optional[int] = None,
              outfmt: str = "TXT", output_dirname: Optional[str] = None, loop: int = 1, warmup_count: int = 1,
              seq_len: int = SEQ_LEN, show_progress: bool = True, extra_summary: Optional[dict] = None) -> RunReport:
    """Run every sample file through backend and write an ais_bench result folder under output_root."""
    outfmt = check_run_options(outfmt, loop, warmup_count)
    input_dirs = [Path(d) for d in input_dirs]
    if len(input_dirs) != len(backend.input_names):
        raise UsageError(f"{len(input_dirs)} input folders given, the model has {len(backend.input_names)} inputs")
    listings = [list_input_files(d) for d in input_dirs]
    for folder, names in zip(input_dirs[1:], listings[1:]):
        if len(names) != len(listings[0]):
            raise DataError(f"{folder}: {len(names)} files, but {input_dirs[0]} has {len(listings[0])}")
    seq_len = backend.seq_len or seq_len
    batch = resolve_batch_size(backend, batch_size)
    chunks = iter_batches(len(listings[0]), batch)  # lazily: memory must not grow with the sample count
    dtypes = [folder_dtype(d, names[0], seq_len) for d, names in zip(input_dirs, listings)]

    prefixes = [path_prefix(d) for d in input_dirs]

    def feeds_for(chunk):
        return {name: _load_batch(d, names, chunk, seq_len, dtype)
                for name, d, names, dtype in zip(backend.input_names, input_dirs, listings, dtypes)}

    def batches():
        for chunk in chunks:
            slots = [Slot(row, i, listings[0][i], [prefix + names[i] for prefix, names in zip(prefixes, listings)])
                     for row, i in enumerate(chunk) if i is not None]  # None: a padding placeholder, not written
            yield feeds_for(chunk), slots

    return execute(backend, batches(), output_root, total=len(listings[0]), desc=f"infer {backend.name} bs{batch}",
                   summarize=lambda times: build_summary(backend, times, batch, extra=extra_summary),
                   outfmt=outfmt, output_dirname=output_dirname, loop=loop, warmup_count=warmup_count,
                   show_progress=show_progress)


def run_pure(backend: Backend, *, batch_size: Optional[int] = None, loop: int = 100, warmup_count: int = 1,
             pure_data_type: str = "zero", seq_len: int = SEQ_LEN, vocab_size: int = 100, seed: int = 0) -> RunReport:
    """ais_bench's pure-inference performance mode: no input files, one generated batch, `loop` executions."""
    batch = resolve_batch_size(backend, batch_size)
    seq_len = backend.seq_len or seq_len
    shape = (batch, seq_len)
    if pure_data_type == "zero":
        feeds = {n: np.zeros(shape, np.int64) for n in backend.input_names}
    elif pure_data_type == "random":
        from tinybert_infer.data.features import synthetic_feeds

        by_role = synthetic_feeds(batch, seq_len, vocab_size, seed, lengths="full")
        missing = [n for n in backend.input_names if n not in by_role]
        if missing:
            raise UsageError(f"--pure_data_type random: the model's inputs {missing} have no known role "
                             f"(expected {', '.join(by_role)})")
        feeds = {n: by_role[n] for n in backend.input_names}
    else:
        raise UsageError(f"--pure_data_type {pure_data_type!r}: use zero or random")
    for _ in range(warmup_count):
        backend.run(feeds)
    times: list = []
    for _ in range(loop):
        _timed(lambda: backend.run(feeds), times)
    return RunReport(None, build_summary(backend, times, batch))


def build_summary(backend: Backend, times_ms, batch: int, *, filesinfo=None, extra=None) -> dict:
    stats = latency_stats(times_ms)
    zero = latency_stats([])
    summary = {
        "filesinfo": filesinfo or {},
        "args": list(sys.argv),
        "NPU_compute_time": stats,  # ais_bench's key; here: wall time of one backend execution on this host
        "H2D_latency": zero,        # host backends copy nothing to a device
        "D2H_latency": zero,
        "throughput": 1000.0 * batch / stats["mean"] if stats["mean"] else 0.0,
        "npu_compute_time_list": [float(t) for t in times_ms],
        "pid": os.getpid(),
        "batchsize": batch,
        "backend": backend.describe(),
    }
    summary.update(extra or {})
    return summary
