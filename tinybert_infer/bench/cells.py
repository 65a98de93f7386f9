"""One benchmark cell in a fresh process: a (backend, batch) throughput cell, an accuracy run, or the GEMM
roofline. A fresh process per cell makes its peak RSS that backend's alone."""

from __future__ import annotations

from pathlib import Path

from tinybert_infer.isolate import call_in_child
from tinybert_infer.machine import peak_rss_mb


def run_cell(task: dict) -> dict:
    """Runs in a spawned child: task["kind"] is "roofline", "throughput" or "accuracy"."""
    try:
        if task["kind"] == "roofline":
            from tinybert_infer.bench.limits import gemm_rates

            return {"roofline": gemm_rates(task["threads"], task["seconds"]), "rss_mb": peak_rss_mb()}
        from tinybert_infer.export.optimize import make_variant_backend

        path = Path(task["path"]) if task["path"] else None
        backend = make_variant_backend(task["variant"], path, threads=task["threads"],
                                       checkpoint_dir=task["checkpoint_dir"], batch_size=task["batch"])
        if task["kind"] == "throughput":
            from tinybert_infer.plan.timing import TimingPolicy, measure_backend

            result = measure_backend(backend, task["batch"], TimingPolicy(**task["policy"]), task["vocab_size"])
        else:
            from tinybert_infer.bench.accuracy import accuracy_run

            result = accuracy_run(backend, task)
        result.update(describe=backend.describe(), rss_mb=peak_rss_mb())
        return result
    except Exception as exc:  # one failing backend must not sink the whole table
        return {"error": cell_error(exc), "rss_mb": peak_rss_mb()}


def cell_error(exc: Exception) -> str:
    """A failed cell's entry in the table: the exception's type and first line."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def in_child(task: dict) -> dict:
    """run_cell(task) in a fresh spawned process."""
    return call_in_child(run_cell, task)


def variant_task(kind: str, name: str, artefact, *, threads: int, checkpoint_dir, batch: int, **extra) -> dict:
    """A throughput or accuracy cell of one artefact (optimize.build_artefacts' entry for `name`)."""
    return {"kind": kind, "variant": name, "path": str(artefact.path) if artefact.path else None,
            "threads": threads, "checkpoint_dir": str(checkpoint_dir), "batch": batch, **extra}


def roofline(threads: int, seconds: float) -> dict:
    """The GEMM rates (limits.gemm_rates) measured in a fresh process: {"roofline": ...} or {"error": ...}."""
    return in_child({"kind": "roofline", "threads": threads, "seconds": seconds})
