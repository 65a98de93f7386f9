"""Timing one backend on one static batch: warm-up, then enough runs for a stable median."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from tinybert_infer.data.features import synthetic_feeds
from tinybert_infer.layout import SEQ_LEN
from tinybert_infer.run.results import latency_stats


@dataclass(frozen=True)
class TimingPolicy:
    warmup_s: float = 0.5
    warmup_runs: int = 3
    min_s: float = 3.0      # measure at least this long ...
    min_runs: int = 30      # ... and at least this many batches ...
    max_s: float = 12.0     # ... but stop here even if min_runs is not reached (slow backends at BS 64)


QUICK = TimingPolicy(warmup_s=0.05, warmup_runs=1, min_s=0.2, min_runs=3, max_s=1.0)
SELECT = TimingPolicy(warmup_s=0.3, warmup_runs=2, min_s=1.0, min_runs=5, max_s=3.0)
SELECT_ROUND = TimingPolicy(warmup_s=0.1, warmup_runs=1, min_s=0.4, min_runs=3, max_s=1.5)  # x3 interleaved


def measure(run, batch: int, policy: TimingPolicy = TimingPolicy()) -> dict:
    """run(): one batch. Returns latency stats per batch (ms) and samples/s from the median and the mean."""
    start = time.perf_counter()
    done = 0
    while done < policy.warmup_runs or time.perf_counter() - start < policy.warmup_s:
        run()
        done += 1
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000.0)
        elapsed = time.perf_counter() - start
        if (elapsed >= policy.min_s and len(times) >= policy.min_runs) or elapsed >= policy.max_s:
            break
    stats = latency_stats(times)
    return {
        "latency_ms": {"mean": stats["mean"], "p50": stats["median"], "p99": stats["percentile(99%)"],
                       "min": stats["min"], "max": stats["max"]},
        "iterations": stats["count"],
        "samples_per_s": 1000.0 * batch / stats["median"],
        "samples_per_s_mean": 1000.0 * batch / stats["mean"],
    }


DYNAMIC_PROBE_WIDTHS = (12, 20, 28, 36, 48)  # batch lengths length-aware batching feeds on SST-2-like data


def measure_backend(backend, batch: int, policy: TimingPolicy = TimingPolicy(), vocab_size: int = 100, *,
                    varied_widths: bool = False) -> dict:
    """Timing at the static shape [batch, 64] (the published table's), or with varied_widths on the batch
    lengths length-aware batching feeds a dynamic-shape model: a different width almost every time, so a
    runtime's cost per new shape shows. Which one is the caller's choice, never inferred from the backend:
    PyTorch eager takes any width, yet the table's row for it must be at 64 like every other."""
    feeds = synthetic_feeds(batch, backend.seq_len or SEQ_LEN, vocab_size)
    feeds = {n: feeds[n] for n in backend.input_names}
    if not varied_widths:
        return measure(lambda: backend.run(feeds), batch, policy)
    if backend.seq_len is not None:
        raise ValueError(f"{backend.name}: static sequence length {backend.seq_len}, cannot vary the width")
    shapes = [{n: np.ascontiguousarray(v[:, :w]) for n, v in feeds.items()} for w in DYNAMIC_PROBE_WIDTHS]

    def one_round():  # through run_pipelined, as inference feeds it: several batches in flight where streams allow
        for _ in backend.run_pipelined((shape, None) for shape in shapes):
            pass

    result = measure(one_round, batch * len(shapes), policy)
    result["latency_ms"] = {k: v / len(shapes) for k, v in result["latency_ms"].items()}  # per batch, on average
    return result
