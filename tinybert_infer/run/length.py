"""Length-aware batching for dynamic-shape backends: no matrix work spent on padding.

The ModelZoo recipe pads every sentence to 64 tokens because the 310P model has static shapes. Here each
sample's real length is read from its mask (or comes from tokenising a TSV without padding); samples are
ordered by length (a stable sort, so ties keep file order), the order is cut into batches of at most BS
samples, and each batch is padded only to its longest member, optionally rounded up to a multiple (e.g. 8)
or to a bucket length (e.g. 16,32,48,64) so runtimes can reuse their plans. Each result is written under
its ORIGINAL sample's name in ais_bench's layout (run/results.py), so postprocessing does not change.

Cropping the trailing padding is exact: padded positions only ever enter through keys that the additive
mask sends to exp(-10000) = 0, and position ids count from the left.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tinybert_infer.backends.base import Backend
from tinybert_infer.data.features import (folder_dtype, list_input_files, make_tokenizer, padded_features, path_prefix,
                                          read_samples)
from tinybert_infer.errors import DataError, UsageError
from tinybert_infer.run.inference import RunReport, Slot, resolve_batch_size, build_summary, check_run_options, execute
from tinybert_infer.layout import INPUT_NAMES, MASK_NAME, SEQ_LEN, sample_file_name

MODES = ("dynamic_length", "static")
TOKENIZE_CHUNK = 512
# OpenVINO streams for length-aware batches: narrow batches (M = batch x ~26 rows on SST-2) make GEMMs that two
# single-thread streams, each on its own batch, run ~12 % faster than one two-thread stream (measured on the
# 2-core CI machine); full-width static batches gain nothing from it, so the static path keeps one.
LENGTH_AWARE_OPENVINO_STREAMS = 2


def default_streams(backend_name: str, threads: Optional[int], dynamic_length: bool) -> int:
    """Execution streams when the user names none: see LENGTH_AWARE_OPENVINO_STREAMS."""
    if backend_name != "openvino" or not dynamic_length:
        return 1
    return max(1, min(LENGTH_AWARE_OPENVINO_STREAMS, threads or os.cpu_count() or 1))


@dataclass(frozen=True)
class Batch:
    indices: Tuple[int, ...]  # original sample indices, in the order they are fed
    length: int               # sequence length this batch is padded (or cropped) to


@dataclass
class Samples:
    """All samples in memory, padded to a common width; lengths say how much of each row is real."""

    feats: Dict[str, np.ndarray]      # input name -> int64 [N, width]
    lengths: np.ndarray               # int64 [N]
    file_names: Sequence[str]         # input 0's file name per sample: the output file's stem comes from it
    infiles: Callable[[int], List[str]]  # sample index -> its sources, for the summary's filesinfo
    summary_extra: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.lengths)

    @property
    def width(self) -> int:
        return next(iter(self.feats.values())).shape[1]


# ---------------------------------------------------------------- planning
def real_lengths(mask: np.ndarray) -> np.ndarray:
    """Position after the last non-zero mask value per row; a row with no mask at all keeps its full width
    (cropping it would change its result, since then every position is attended equally)."""
    mask = np.asarray(mask)
    nonzero = mask != 0
    width = mask.shape[1]
    last = width - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, width).astype(np.int64)


def parse_buckets(text: str) -> Tuple[int, ...]:
    """'16,32,48,64' -> (16, 32, 48, 64): positive, strictly increasing."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--buckets {text!r}: expected comma-separated positive integers such as 16,32,48,64") from None
    if not values or min(values) < 1 or list(values) != sorted(set(values)):
        raise UsageError(f"--buckets {text!r}: expected strictly increasing positive integers such as 16,32,48,64")
    return values


def padded_length(longest: int, width: int, *, pad_multiple: Optional[int] = None,
                  buckets: Optional[Sequence[int]] = None) -> int:
    """The length a batch whose longest member has `longest` tokens is fed at; never beyond the width."""
    if pad_multiple:
        return min(width, math.ceil(longest / pad_multiple) * pad_multiple)
    if buckets:
        # Longer than every bucket: the full width is the implicit last bucket.
        return min((b for b in buckets if b >= longest and b <= width), default=width)
    return longest


def plan_batches(lengths: Sequence[int], batch_size: int, *, width: int, pad_multiple: Optional[int] = None,
                 buckets: Optional[Sequence[int]] = None, mode: str = "dynamic_length") -> List[Batch]:
    """dynamic_length: stable sort by length, chunks of batch_size, each padded to its longest member; the
    partial chunk (N mod batch_size samples) is the first, the shortest: a static-shape compile fills it up
    with copies (OpenVinoStaticShapes), which cost the least there (SST-2 dev at BS 32: 3.6 % fewer tokens
    computed than with the longest sentences partial).
    static: file order, every batch at the full width (the ModelZoo path, for a TSV fed directly)."""
    if batch_size < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_size}")
    if pad_multiple is not None and buckets is not None:
        raise UsageError("give either --pad_multiple or --buckets, not both")
    lengths = np.asarray(lengths, dtype=np.int64)
    if mode == "static":
        order = np.arange(len(lengths))
    elif mode == "dynamic_length":
        order = np.argsort(lengths, kind="stable")
    else:
        raise UsageError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    partial = len(order) % batch_size if mode == "dynamic_length" else 0
    bounds = ([0] if partial else []) + list(range(partial, len(order), batch_size))
    batches = []
    for start in bounds:
        chunk = tuple(int(i) for i in order[start:start + (partial if start == 0 and partial else batch_size)])
        if mode == "static":
            length = width
        else:
            length = padded_length(int(lengths[list(chunk)].max()), width, pad_multiple=pad_multiple,
                                   buckets=buckets)
        batches.append(Batch(chunk, length))
    return batches


def token_counts(batches: Sequence[Batch], lengths: Sequence[int], batch_size: int, width: int,
                 min_rows: int = 1) -> dict:
    """Real tokens; token positions actually computed (padding and filler rows included: a batch is fed with
    at least min_rows rows); and what the static path computes (every batch full, every row at the width)."""
    lengths = np.asarray(lengths)
    computed = sum(max(len(b.indices), min_rows) * b.length for b in batches)
    return {
        "real_tokens": int(lengths.sum()),
        "padded_tokens": int(computed),
        "static_tokens": int(math.ceil(len(lengths) / batch_size) * batch_size * width),
        "static_seq_len": int(width),
    }


# ---------------------------------------------------------------- reading samples
def read_sample_files(input_dirs: Sequence, input_names: Sequence[str] = INPUT_NAMES,
                      seq_len: int = SEQ_LEN) -> Samples:
    """Per-sample files (ais_bench's input folders, natural order); lengths from the mask folder."""
    input_dirs = [Path(d) for d in input_dirs]
    if len(input_dirs) != len(input_names):
        raise UsageError(f"{len(input_dirs)} input folders given, the model has {len(input_names)} inputs")
    if MASK_NAME not in input_names:
        raise UsageError(f"length-aware batching needs an input named {MASK_NAME}; the model has {list(input_names)}")
    listings = [list_input_files(d) for d in input_dirs]
    for folder, names in zip(input_dirs[1:], listings[1:]):
        if len(names) != len(listings[0]):
            raise DataError(f"{folder}: {len(names)} files, but {input_dirs[0]} has {len(listings[0])}")
    feats = {}
    for name, folder, names in zip(input_names, input_dirs, listings):
        feats[name] = read_samples(folder, names, seq_len, folder_dtype(folder, names[0], seq_len))
    prefixes = [path_prefix(d) for d in input_dirs]

    def infiles(index: int) -> List[str]:
        return [prefix + names[index] for prefix, names in zip(prefixes, listings)]

    return Samples(feats, real_lengths(feats[MASK_NAME]), listings[0], infiles)


def read_tsv_samples(tsv_path, vocab_file, max_seq_length: int = SEQ_LEN) -> Samples:
    """Tokenise a GLUE TSV exactly as preprocessing does ([CLS] tokens [SEP], truncated), but without padding;
    sample i is named like preprocessing's input<i>.bin, so results line up with a preprocessed folder."""
    from itertools import islice

    from tinybert_infer.data.tsv import TsvReader

    if max_seq_length < 2:
        raise DataError(f"max_seq_length must be at least 2, got {max_seq_length}")
    tokenizer = make_tokenizer(vocab_file)
    reader = TsvReader(tsv_path, label_set=None)  # labels are not needed to infer
    ids: List[List[int]] = []
    lines: List[int] = []
    examples = iter(reader)
    while chunk := list(islice(examples, TOKENIZE_CHUNK)):
        ids += tokenizer.token_ids([ex.text for ex in chunk], max_seq_length)
        lines += [ex.line for ex in chunk]
    lengths = np.array([len(row) for row in ids], dtype=np.int64)
    feats = padded_features(ids, max_seq_length, 0)  # padding is masked out, so 0 will do
    names = [sample_file_name(i) for i in range(len(ids))]

    def infiles(index: int) -> List[str]:
        return [f"{reader.path}:{lines[index]}"]

    extra = {"tsv": {"path": str(reader.path), "sha256": reader.sha256}, "max_seq_length": max_seq_length}
    return Samples(feats, lengths, names, infiles, extra)


# ---------------------------------------------------------------- running
def batch_feeds(samples: Samples, batch: Batch, input_names: Sequence[str], fed_batch: int) -> dict:
    rows = list(batch.indices)
    rows += [rows[0]] * (fed_batch - len(rows))  # a static-batch model: filler copies, as ais_bench pads
    return {name: np.ascontiguousarray(samples.feats[name][rows, :batch.length]) for name in input_names}


def _check_backend(backend: Backend, samples: Samples, mode: str) -> None:
    missing = [n for n in backend.input_names if n not in samples.feats]
    if missing:
        raise UsageError(f"the model's inputs {list(backend.input_names)} are not {list(INPUT_NAMES)}")
    if mode == "dynamic_length" and backend.seq_len is not None:
        artefact = backend.describe().get("artefact", backend.name)
        raise UsageError(f"{artefact}: static sequence length {backend.seq_len}; --dynamic_length needs a "
                         f"dynamic-shape model (python -m tinybert_infer export --dynamic)")
    if mode == "static" and backend.seq_len not in (None, samples.width):
        raise DataError(f"the model takes {backend.seq_len} tokens per sample, the inputs have {samples.width}")


def run_samples(backend: Backend, samples: Samples, output_root, *, batch_size: Optional[int] = None,
                mode: str = "dynamic_length", pad_multiple: Optional[int] = None,
                buckets: Optional[Sequence[int]] = None, outfmt: str = "TXT", output_dirname: Optional[str] = None,
                loop: int = 1, warmup_count: int = 1, show_progress: bool = True,
                extra_summary: Optional[dict] = None) -> RunReport:
    """Run samples in length-sorted batches and write ais_bench's result folder, one file per original sample."""
    outfmt = check_run_options(outfmt, loop, warmup_count)
    _check_backend(backend, samples, mode)
    batch = resolve_batch_size(backend, batch_size)
    fed_batch = backend.batch_size or 1  # rows a static-batch model must get; dynamic batch: as many as real
    batches = plan_batches(samples.lengths, batch, width=samples.width, pad_multiple=pad_multiple,
                           buckets=buckets, mode=mode)

    def feed_batches():
        for planned in batches:  # filler rows come after the real ones: they get no slot
            slots = [Slot(row, index, samples.file_names[index], samples.infiles(index))
                     for row, index in enumerate(planned.indices)]
            yield batch_feeds(samples, planned, backend.input_names, fed_batch), slots

    def summarize(times):
        extra = dict(samples.summary_extra)
        extra.update(extra_summary or {})
        extra.update(length_summary(batches, samples, mode, batch, fed_batch, pad_multiple, buckets, times, loop))
        return build_summary(backend, times, batch, extra=extra)

    return execute(backend, feed_batches(), output_root, total=samples.count,
                   desc=f"infer {backend.name} bs{batch} {mode}", summarize=summarize, outfmt=outfmt,
                   output_dirname=output_dirname, loop=loop, warmup_count=warmup_count, show_progress=show_progress)


def length_summary(batches, samples: Samples, mode: str, batch: int, fed_batch: int, pad_multiple, buckets,
                   times, loop) -> dict:
    """The summary's extra keys: the mode, token counts and an honest throughput over unequal batches."""
    info = {"mode": mode, "pad_multiple": pad_multiple, "buckets": list(buckets) if buckets else None,
            "batches": len(batches), "batch_lengths": [b.length for b in batches]}
    info.update(token_counts(batches, samples.lengths, batch, samples.width, fed_batch))
    info["padded_token_reduction"] = info["static_tokens"] / info["padded_tokens"] if info["padded_tokens"] else 0.0
    total_ms = sum(times) / loop
    # Batches differ in length (and the last one in size), so 1000*BS/mean(ms) would misstate it.
    info["throughput"] = 1000.0 * samples.count / total_ms if total_ms else 0.0
    return info


def format_length_block(summary: dict) -> str:
    """One printed line per figure the length-aware mode adds to ais_bench's block."""
    padding = (f"rows of {summary['row_width']}, up to {summary['slots_per_row']} sentences each"
               if summary.get("mode") == "packed" else
               f"pad multiple {summary['pad_multiple']}" if summary.get("pad_multiple") else
               f"buckets {','.join(map(str, summary['buckets']))}" if summary.get("buckets") else "longest member")
    return "\n".join([
        f"[INFO] mode: {summary['mode']} ({padding}), {summary['batches']} batches",
        f"[INFO] tokens: real {summary['real_tokens']}, computed with padding {summary['padded_tokens']}, "
        f"static-{summary['static_seq_len']} path {summary['static_tokens']} "
        f"({summary['padded_token_reduction']:.2f}x fewer than static)",
        "[INFO] throughput above = samples / total compute time",
    ])


def run_files_by_length(backend: Backend, input_dirs: Sequence, output_root, *, seq_len: int = SEQ_LEN,
                        **kwargs) -> RunReport:
    """Same inputs as inference.run_files (per-sample files), fed length-aware."""
    samples = read_sample_files(input_dirs, backend.input_names, seq_len)
    return run_samples(backend, samples, output_root, **kwargs)


def run_tsv(backend: Backend, tsv_path, vocab_file, output_root, *, max_seq_length: int = SEQ_LEN,
            **kwargs) -> RunReport:
    """A TSV straight to a result folder: tokenised here, no bert_bin/ needed."""
    return run_samples(backend, read_tsv_samples(tsv_path, vocab_file, max_seq_length), output_root, **kwargs)
