"""Packed batching: sentences laid end to end in rows of the model's width, so the linear layers compute real
tokens, not padding, at one static shape (one compile, every runtime's static-shape kernels).

Rows are filled best-fit decreasing (longest sentence first, each into the open row it fills most tightly, at
most PACKED_SLOTS per row): SST-2 dev at width 64 fills its rows to 97 %, against the 1.11x padded tokens of
length-sorted batches rounded to multiples of 4. The packed graph (models/modeling.PackedSequenceClassifier)
keeps attention within each sentence, so a sentence's logits do not depend on its row-mates.

Outputs are [rows, slots, labels]; `FlatOutputs` hands them on as [rows * slots, labels], so a sample's Slot
row is row * slots + slot and the ais_bench sink (inference.execute) stays the one for every batching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tinybert_infer.backends.base import Backend, WrappedBackend
from tinybert_infer.errors import UsageError
from tinybert_infer.layout import (CLS_INDEX_NAME, IDS_NAME, PACKED_INPUT_NAMES, PACKED_SLOTS, POSITIONS_NAME,
                                   SEGMENTS_NAME, SENTENCES_NAME)


@dataclass(frozen=True)
class PackedBatch:
    rows: Tuple[Tuple[int, ...], ...]  # per row, the sample indices laid end to end in it


def pack_rows(lengths: Sequence[int], width: int, slots: int = PACKED_SLOTS) -> List[Tuple[int, ...]]:
    """Best-fit decreasing: each sample (longest first) goes to the open row whose free space it fills most
    tightly, or opens a row. O(N * width). A sample longer than the width cannot be packed."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and (lengths.max() > width or lengths.min() < 1):
        raise UsageError(f"packing: sample lengths must be 1..{width}, got {int(lengths.min())}..{int(lengths.max())}")
    rows: List[List[int]] = []
    free: List[int] = []
    by_free: Dict[int, List[int]] = {}  # free tokens -> open rows with that much room and a slot left
    for index in np.argsort(-lengths, kind="stable"):
        need = int(lengths[index])
        row = next((by_free[room].pop() for room in range(need, width + 1) if by_free.get(room)), None)
        if row is None:
            row = len(rows)
            rows.append([])
            free.append(width)
        rows[row].append(int(index))
        free[row] -= need
        if len(rows[row]) < slots and free[row] > 0:
            by_free.setdefault(free[row], []).append(row)
    return [tuple(r) for r in rows]


def plan_packed_batches(lengths: Sequence[int], batch_rows: int, *, width: int,
                        slots: int = PACKED_SLOTS) -> List[PackedBatch]:
    if batch_rows < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_rows}")
    rows = pack_rows(lengths, width, slots)
    return [PackedBatch(tuple(rows[i:i + batch_rows])) for i in range(0, len(rows), batch_rows)]


def packed_feeds(feats: Dict[str, np.ndarray], lengths: np.ndarray, batch: PackedBatch, width: int,
                 slots: int = PACKED_SLOTS) -> dict:
    """The packed graph's inputs for one batch, from unpacked features ({input_ids, segment_ids, ...} [N, W'])."""
    count = len(batch.rows)
    out = {name: np.zeros((count, width), np.int64) for name in (IDS_NAME, SEGMENTS_NAME, POSITIONS_NAME,
                                                                 SENTENCES_NAME)}
    out[CLS_INDEX_NAME] = np.zeros((count, slots), np.int64)
    ids, segments = feats[IDS_NAME], feats[SEGMENTS_NAME]
    for r, row in enumerate(batch.rows):
        start = 0
        for slot, index in enumerate(row):
            n = int(lengths[index])
            end = start + n
            out[IDS_NAME][r, start:end] = ids[index, :n]
            out[SEGMENTS_NAME][r, start:end] = segments[index, :n]
            out[POSITIONS_NAME][r, start:end] = np.arange(n)
            out[SENTENCES_NAME][r, start:end] = slot + 1
            out[CLS_INDEX_NAME][r, slot] = start
            start = end
    return out


def slot_rows(batch: PackedBatch, slots: int = PACKED_SLOTS) -> Iterator[Tuple[int, int]]:
    """(flat output row, sample index) for every sample of the batch."""
    for r, row in enumerate(batch.rows):
        for slot, index in enumerate(row):
            yield r * slots + slot, index


def token_counts(batches: Sequence[PackedBatch], lengths: Sequence[int], width: int, fed_rows: int = 1) -> dict:
    """As length.token_counts: real tokens, positions computed (a batch is fed with at least fed_rows rows),
    and the static path's (every sample at the width)."""
    computed = sum(max(len(b.rows), fed_rows) * width for b in batches)
    return {"real_tokens": int(np.sum(lengths)), "padded_tokens": int(computed),
            "static_tokens": int(len(lengths) * width), "static_seq_len": int(width),
            "packed_rows": int(sum(len(b.rows) for b in batches))}


class FlatOutputs(WrappedBackend):
    """A packed-graph backend whose [rows, slots, labels] outputs are handed on as [rows * slots, labels]."""

    def run(self, feeds):
        return _flat(self.inner.run(feeds))

    def run_pipelined(self, items):
        for tag, logits, ms in self.inner.run_pipelined(items):
            yield tag, _flat(logits), ms


def _flat(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits)
    return logits.reshape(-1, logits.shape[-1])


def score_packed(run_pipelined, feats: Dict[str, np.ndarray], batch_rows: int, width: int) -> np.ndarray:
    """Logits [N, labels] in input order for unpacked features, packed into runs of batch_rows rows.
    run_pipelined: a backend's ((feeds, tag) items -> (tag, logits, ms)), or anything shaped like it."""
    from tinybert_infer.layout import MASK_NAME
    from tinybert_infer.run.length import real_lengths

    lengths = real_lengths(feats[MASK_NAME])
    batches = plan_packed_batches(lengths, batch_rows, width=width)
    out = np.empty((len(lengths), 0), np.float32)
    for batch, logits, _ms in run_pipelined((packed_feeds(feats, lengths, b, width), b) for b in batches):
        logits = _flat(logits)
        if out.shape[1] == 0:
            out = np.empty((len(lengths), logits.shape[1]), np.float32)
        for row, index in slot_rows(batch):
            out[index] = logits[row]
    return out


def check_packed_backend(backend: Backend) -> int:
    """The packed model's row width (its fixed sequence axis), after checking it takes the packed inputs."""
    if sorted(backend.input_names) != sorted(PACKED_INPUT_NAMES):
        raise UsageError(f"packed batching needs the packed model (python -m tinybert_infer export --dynamic); "
                         f"this one takes {list(backend.input_names)}")
    width = backend.seq_len or getattr(backend, "row_width", None)
    if not width:
        raise UsageError("the packed model has no fixed row width (export it with python -m tinybert_infer export "
                         "--dynamic)")
    return int(width)


def run_packed_samples(backend: Backend, samples, output_root, *, batch_rows: int, outfmt: str = "TXT",
                       output_dirname: Optional[str] = None, loop: int = 1, warmup_count: int = 1,
                       show_progress: bool = True, extra_summary: Optional[dict] = None):
    """length.run_samples for the packed graph: the same ais_bench result folder, one file per original sample."""
    from tinybert_infer.run.inference import Slot, build_summary, check_run_options, execute

    outfmt = check_run_options(outfmt, loop, warmup_count)
    width = check_packed_backend(backend)
    fed_rows = getattr(backend, "static_batch", None) or 1
    batches = plan_packed_batches(samples.lengths, batch_rows, width=width)

    def feed_batches():
        for planned in batches:
            slots = [Slot(row, index, samples.file_names[index], samples.infiles(index))
                     for row, index in slot_rows(planned)]
            yield packed_feeds(samples.feats, samples.lengths, planned, width), slots

    def summarize(times):
        extra = dict(samples.summary_extra)
        extra.update(extra_summary or {})
        extra.update(packed_summary(batches, samples, width, fed_rows, times, loop))
        return build_summary(backend, times, batch_rows, extra=extra)

    return execute(FlatOutputs(backend), feed_batches(), output_root, total=samples.count,
                   desc=f"infer {backend.name} packed {batch_rows} rows of {width}", summarize=summarize,
                   outfmt=outfmt, output_dirname=output_dirname, loop=loop, warmup_count=warmup_count,
                   show_progress=show_progress)


def packed_summary(batches, samples, width: int, fed_rows: int, times, loop) -> dict:
    """The summary's extra keys, as length.length_summary's: mode, token counts, throughput over the run."""
    info = {"mode": "packed", "pad_multiple": None, "buckets": None, "batches": len(batches),
            "row_width": width, "slots_per_row": PACKED_SLOTS}
    info.update(token_counts(batches, samples.lengths, width, fed_rows))
    info["padded_token_reduction"] = info["static_tokens"] / info["padded_tokens"] if info["padded_tokens"] else 0.0
    total_ms = sum(times) / loop
    info["throughput"] = 1000.0 * samples.count / total_ms if total_ms else 0.0
    return info
