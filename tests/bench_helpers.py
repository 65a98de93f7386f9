"""Shared by the bench tests: a benchmark report in run_benchmark's shape, with the figures a test gives."""

from tinybert_infer.export.optimize import VARIANTS


def synthetic_report(rates, accuracy) -> dict:
    """samples/s per (backend, bs) and accuracy per backend, as rows and an accuracy section."""
    rows = [{"backend": n, "precision": VARIANTS[n].precision, "batch_size": bs, "samples_per_s": v, "rss_mb": 500.0,
             "latency_ms": {"mean": 1, "p50": 1, "p99": 1}, "iterations": 9}
            for (n, bs), v in rates.items()]
    return {"rows": rows, "batch_sizes": sorted({bs for _, bs in rates}), "backends": {n: {} for n, _ in rates},
            "accuracy": {"per_backend": {n: {"accuracy": a} for n, a in accuracy.items()}}}
