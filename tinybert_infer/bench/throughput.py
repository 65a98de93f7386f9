"""The throughput section: the model timed (TinyBERT-4L-312D shape, random weights, by default), its artefacts
per batch size, and one cell per (backend, BS), each in its own process."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

from tinybert_infer.layout import SEQ_LEN
from tinybert_infer.export.optimize import VARIANTS
from tinybert_infer.bench.cells import in_child, variant_task
from tinybert_infer.bench.limits import fraction_of_limit, limits
from tinybert_infer.bench.prepare import (RANDOM_WEIGHTS_TOLERANCE, export_for, prepare_artefacts, read_config,
                                          throughput_checkpoint)


class ThroughputModel:
    """The checkpoint timed for throughput, its FLOPs, and its limits at the measured GEMM rates."""

    def __init__(self, checkpoint: Optional[Path], work: Path):
        self.random_weights = checkpoint is None
        self.checkpoint = Path(checkpoint) if checkpoint else throughput_checkpoint(work)
        self.config = read_config(self.checkpoint)
        self.flops = self.config.flops_per_sample(SEQ_LEN)
        self.executed_flops = self.config.executed_flops_per_sample(SEQ_LEN)
        self.limits: dict = {}

    def set_roofline(self, roofline: dict) -> dict:
        """Limits (samples/s per precision) at these GEMM rates; kept for the fractions of later rows."""
        self.limits.update(limits(roofline, self.flops))
        return self.limits

    def section(self) -> dict:
        c = self.config
        return {
            "checkpoint": str(self.checkpoint), "random_weights": self.random_weights,
            "shape": {k: getattr(c, k) for k in ("num_hidden_layers", "hidden_size", "num_attention_heads",
                                                 "intermediate_size", "vocab_size")},
            "seq_len": SEQ_LEN, "gflop_per_sample": self.flops / 1e9,
            # The exports (and the PyTorch module) compute the last layer for the [CLS] row only: less work than
            # the config's FLOPs, which the limit keeps as its yardstick; this is the work actually done.
            "executed_gflop_per_sample": self.executed_flops / 1e9,
            "limit_samples_per_s": self.limits}

    def add_fractions(self, row: dict) -> None:
        """Fractions of the limit (config FLOPs, the yardstick) and, on the work the graph really executes, the
        GEMM efficiency: how close the kernels themselves run to the measured matrix-multiply rate."""
        row["fraction_of_limit"] = fraction_of_limit(row["samples_per_s"], row["precision"], self.limits)
        row["fraction_of_fp32_limit"] = fraction_of_limit(row["samples_per_s"], "fp32", self.limits)
        share = self.executed_flops / self.flops
        row["executed_work_efficiency"] = (row["fraction_of_limit"] * share
                                           if row["fraction_of_limit"] is not None else None)


def build_artefacts_per_bs(model: ThroughputModel, names, batch_sizes, *, threads: int, out_dir: Path, log) -> dict:
    """{bs: {variant: artefact}}: the throughput model exported at each BS, every named variant built from it;
    INT8 calibrated on synthetic sequences (random weights: no sentences to keep)."""
    from tinybert_infer.export.optimize import calibration_batches
    from tinybert_infer.data.features import synthetic_feeds

    artefacts = {}
    for bs in batch_sizes:
        sim = export_for(model.checkpoint, bs, out_dir, tolerance=RANDOM_WEIGHTS_TOLERANCE)
        calib = (lambda bs=bs: calibration_batches(synthetic_feeds(max(64, bs), vocab_size=model.config.vocab_size,
                                                                  seed=1), bs))
        artefacts[bs] = prepare_artefacts(sim, names, batch=bs, threads=threads, config=model.config,
                                          calibration=calib, log=log)
    return artefacts


def throughput_rows(model: ThroughputModel, artefacts: dict, names, batch_sizes, *, threads: int, policy,
                    log) -> list:
    """One row per (backend, BS), each timed in a fresh process; a failing cell is a row with its error."""
    from tinybert_infer.progress import progress

    rows = []
    with progress(total=len(names) * len(batch_sizes), desc="benchmark", unit="cell", enabled=True) as bar:
        for name in names:
            for bs in batch_sizes:
                art = artefacts[bs].get(name)
                cell = (in_child(variant_task("throughput", name, art, threads=threads,
                                              checkpoint_dir=model.checkpoint, batch=bs, policy=asdict(policy),
                                              vocab_size=model.config.vocab_size))
                        if art is not None else {"error": "artefact not built"})
                row = {"backend": name, "precision": VARIANTS[name].precision, "batch_size": bs, **cell}
                if "samples_per_s" in cell:
                    model.add_fractions(row)
                    log(f"  {name:18s} bs{bs:<3d} {cell['samples_per_s']:8.1f} samples/s  "
                        f"p50 {cell['latency_ms']['p50']:.2f} ms  rss {cell['rss_mb']:.0f} MB")
                else:
                    log(f"  {name:18s} bs{bs:<3d} failed: {cell.get('error')}")
                rows.append(row)
                bar.update(1)
    return rows
