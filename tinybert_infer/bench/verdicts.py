"""What a run's figures conclude: the default and recommended artefacts, and each target (targets.py) met or
not, with its ratio."""

from __future__ import annotations

from typing import Optional, Sequence

from tinybert_infer.export.optimize import VARIANTS
from tinybert_infer.bench.targets import DYNAMIC, REAL_JOB, TABLE, DynamicTargets, RealJobTargets, TableTargets


def rate(rows, name, bs) -> Optional[float]:
    """samples/s of one (backend, BS) cell of the throughput rows; None where it failed or is absent."""
    for r in rows:
        if r["backend"] == name and r["batch_size"] == bs and "samples_per_s" in r:
            return r["samples_per_s"]
    return None


def summarise(report: dict, model_limits: dict, targets: TableTargets = TABLE) -> dict:
    """The results table's conclusions: default fp32, recommended and best low-precision artefacts per BS, and
    the table's targets."""
    rows, bss = report["rows"], report["batch_sizes"]
    acc = report["accuracy"].get("per_backend", {})
    fp32_names = [n for n in report["backends"] if VARIANTS[n].precision == "fp32"]
    exact_auto = [n for n in fp32_names if n != "torch"]  # what `infer --backend auto` chooses among
    fp32_ref = acc.get("torch", {}).get("accuracy")
    if fp32_ref is None:
        fp32_ref = max((acc[n]["accuracy"] for n in fp32_names if "accuracy" in acc.get(n, {})), default=None)

    default, recommended, best_lowp = {}, {}, {}
    for bs in bss:
        cands = [(n, rate(rows, n, bs)) for n in exact_auto if rate(rows, n, bs)]
        default[bs] = max(cands, key=lambda c: c[1]) if cands else None
        ok = [(n, rate(rows, n, bs)) for n in report["backends"] if rate(rows, n, bs)
              and fp32_ref is not None and "accuracy" in acc.get(n, {})
              and acc[n]["accuracy"] >= fp32_ref - targets.recommend_within]
        recommended[bs] = max(ok, key=lambda c: c[1]) if ok else None
        low = [(n, rate(rows, n, bs)) for n in report["backends"] if VARIANTS[n].precision != "fp32"
               and rate(rows, n, bs) and (fp32_ref is None or "accuracy" not in acc.get(n, {})
                                          or acc[n]["accuracy"] >= fp32_ref - targets.lowp_accuracy)]
        best_lowp[bs] = max(low, key=lambda c: c[1]) if low else None

    verdicts = []
    fp32_limit = model_limits.get("fp32")
    # 1. default fp32 vs every fp32 peer at every BS, and its best fraction of the fp32 limit
    worst = None
    for bs in bss:
        if not default[bs]:
            continue
        for n in fp32_names:
            r = rate(rows, n, bs)
            if r:
                ratio = default[bs][1] / r
                worst = ratio if worst is None else min(worst, ratio)
    best_default = max((d[1] for d in default.values() if d), default=None)
    peer_ratios = {peer: {bs: round(default[bs][1] / v, 2) for bs, v in figs.items() if bs in default and default[bs]}
                   for peer, figs in targets.fp32_peers.items()}
    verdicts.append({"target": "default fp32 >= every fp32 peer at every BS (measured side by side)",
                     "ratio": worst, "met": worst is not None and worst >= 1.0 - 1e-9,
                     "vs_issue_figures": peer_ratios})
    frac = best_default / fp32_limit if best_default and fp32_limit else None
    tp = report.get("throughput_model") or {}
    share = tp.get("executed_gflop_per_sample", 1.0) / tp.get("gflop_per_sample", 1.0)
    verdicts.append({"target": f"default fp32 reaches >= {targets.fp32_fraction:.0%} of the measured fp32 limit "
                               "at its best BS", "ratio": frac,
                     "met": frac is not None and frac >= targets.fp32_fraction,
                     "executed_work_efficiency": frac * share if frac is not None else None})
    # 2. best low precision >= 2.5x default fp32 at BS >= 8, accuracy within 0.5 points
    speedups = {bs: best_lowp[bs][1] / default[bs][1] for bs in bss
                if bs >= targets.lowp_min_batch and best_lowp[bs] and default[bs]}
    low_acc = {bs: acc.get(best_lowp[bs][0], {}).get("accuracy") for bs in speedups}
    within = all(a is not None and fp32_ref is not None and abs(a - fp32_ref) <= targets.lowp_accuracy
                 for a in low_acc.values())
    min_speed = min(speedups.values(), default=None)
    verdicts.append({"target": f"best low precision >= {targets.lowp_speedup}x default fp32 at BS >= "
                               f"{targets.lowp_min_batch}, accuracy within {targets.lowp_accuracy} points of fp32",
                     "ratio": min_speed, "per_bs": {bs: round(v, 2) for bs, v in speedups.items()},
                     "met": bool(speedups) and min_speed >= targets.lowp_speedup and within})
    # 3. peak RSS per backend at the largest BS
    top = max(bss)
    rss = {r["backend"]: r.get("rss_mb") for r in rows if r["batch_size"] == top}
    worst_rss = max((v for v in rss.values() if v), default=None)
    verdicts.append({"target": f"no backend above {targets.rss_mb} MB peak RSS at BS {top}", "ratio": worst_rss,
                     "per_backend_mb": rss, "met": worst_rss is not None and worst_rss <= targets.rss_mb})
    overall = max((v for v in recommended.values() if v), key=lambda c: c[1], default=None)
    return {"fp32_reference_accuracy": fp32_ref,
            "default_fp32": {bs: default[bs][0] if default[bs] else None for bs in bss},
            "recommended_per_bs": {bs: recommended[bs][0] if recommended[bs] else None for bs in bss},
            "recommended": overall[0] if overall else None,
            "best_low_precision": {bs: best_lowp[bs][0] if best_lowp[bs] else None for bs in bss},
            "targets": verdicts}


def parity(labels_equal: bool, max_logit_diff: float, targets: DynamicTargets = DYNAMIC) -> bool:
    """Static and length-aware paths agree: the same labels, logits within the tolerance."""
    return labels_equal and max_logit_diff <= targets.logit_tolerance


def dynamic_target(rows: Sequence[dict], targets: DynamicTargets = DYNAMIC) -> dict:
    """The dynamic-length section's verdict: the worst ratio at BS >= min_batch, and parity on every row."""
    gated = [r for r in rows if r["batch"] >= targets.min_batch]
    worst = min((r["ratio"] for r in gated), default=None)
    return {"target": f"dynamic length >= {targets.ratio:g}x static-64 end to end (same backend) at BS >= "
                      f"{targets.min_batch}, same labels, logits within {targets.logit_tolerance:g}",
            "ratio": worst, "per_bs": {f"{r['backend']} bs{r['batch']}": round(r["ratio"], 2) for r in gated},
            "met": bool(gated) and worst >= targets.ratio and all(r["parity"] for r in rows)}


def dynamic_problems(rows: Sequence[dict], targets: DynamicTargets = DYNAMIC) -> list:
    """Lines naming any row that misses the parity requirement or the ratio target at BS >= min_batch."""
    problems = [f"bs {r['batch']}: predictions differ from the static path (labels equal: {r['labels_equal']}, "
                f"max logit diff {r['max_logit_diff']:.2e})" for r in rows if not r["parity"]]
    problems += [f"bs {r['batch']}: {r['ratio']:.2f}x, below the {targets.ratio:g}x target" for r in rows
                 if r["batch"] >= targets.min_batch and r["ratio"] < targets.ratio]
    return problems


def real_job_targets(rows: Sequence[dict], targets: RealJobTargets = REAL_JOB) -> list:
    """Per model and precision: recommended vs static-64, the checkpoint vs its real-job limit, and the 4L-312D
    shape's fastest recommended plan vs the published figure."""
    def row(model, precision, kind):
        return next((r for r in rows if (r["model"], r["precision"], r["kind"]) == (model, precision, kind)), None)

    out = []
    for r in rows:
        if r["kind"] != "recommended":
            continue
        static = row(r["model"], r["precision"], "static-64")
        ratio = r["samples_per_s"] / static["samples_per_s"] if static else None
        out.append({"target": f"{r['model']} {r['precision']}: recommended >= {targets.vs_static:g}x static-64",
                    "ratio": ratio, "met": bool(ratio and ratio >= targets.vs_static)})
        if r["model"] == "checkpoint" and r["fraction_of_real_job_limit"] is not None:
            out.append({"target": f"checkpoint {r['precision']}: >= {targets.fraction:g} of the real-job limit",
                        "ratio": r["fraction_of_real_job_limit"],
                        "met": r["fraction_of_real_job_limit"] >= targets.fraction})
    def fastest_of(model, kind):
        return max((r["samples_per_s"] for r in rows if (r["model"], r["kind"]) == (model, kind)), default=None)

    fastest, best_static = fastest_of("checkpoint", "recommended"), fastest_of("checkpoint", "static-64")
    if fastest and best_static:
        out.append({"target": f"checkpoint: fastest recommended >= {targets.vs_best:g}x the fastest static-64 "
                              "(the issue's 'today's best', measured in this run)",
                    "ratio": fastest / best_static, "met": fastest >= targets.vs_best * best_static})
        goal = targets.vs_best * targets.best_when_filed
        out.append({"target": f"checkpoint: fastest recommended >= {goal:g} samples/s ({targets.vs_best:g}x the "
                              f"{targets.best_when_filed:g}/s the issue measured on its own host)",
                    "ratio": fastest / goal, "met": fastest >= goal})
    fastest_4l = fastest_of("4L-312D", "recommended")
    if fastest_4l:
        goal = targets.sps_4l
        out.append({"target": f"4L-312D recommended >= {goal} samples/s (published {targets.published_card}, "
                              f"BS {targets.published_bs})",
                    "ratio": fastest_4l / goal, "met": fastest_4l >= goal})
    return out
