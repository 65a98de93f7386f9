"""benchmark.md: the benchmark's report as Markdown, from run.run_benchmark's dict or from benchmark.json read
back (the same text either way)."""

from __future__ import annotations

from typing import Optional, Sequence

from tinybert_infer.bench.realjob import PRECISIONS
from tinybert_infer.bench.targets import DYNAMIC, PUBLISHED, REAL_JOB, TABLE
from tinybert_infer.bench.verdicts import rate

PUBLISHED_CARDS = ("310", "310P", "T4")


def fmt(value, digits=1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def at_bs(per_bs: dict, bs: int):
    """A per-BS entry of the report in memory (int keys) or read back from benchmark.json (str keys)."""
    return per_bs.get(bs, per_bs.get(str(bs)))


def row(cells: Sequence) -> str:
    """One Markdown table row; an empty cell is a single space."""
    return "|" + "".join(f" {c} |" if str(c) else " |" for c in cells)


def table(header: Sequence[str], rows: Sequence[Sequence]) -> list:
    return [row(header), "|" + "---|" * len(header)] + [row(r) for r in rows]


def render_markdown(r: dict) -> str:
    lines = [f"# {r['title']}{' (quick mode: short timings, subset accuracy)' if r['quick'] else ''}", ""]
    lines += _setting_lines(r)
    lines += ["", "## Throughput (samples/s) and accuracy, in the shape of the published table", ""]
    lines += _published_shape_table(r)
    pub = r["published"]
    lines += ["", f"★ recommended: the fastest artefact whose accuracy is within {TABLE.recommend_within} points of "
              f"fp32 ({fmt(r['fp32_reference_accuracy'], 2)} %); overall recommendation: **{r['recommended']}**. "
              "(default) = what `infer --backend auto` (the default fp32 path of ais_inference.sh) picks: the fastest "
              "exact-fp32 artefact. Published figures: ModelZoo TinyBERT README, fps per card, "
              f"{pub['model']}; published accuracy: official pth {pub['accuracy']['official pth']}.", ""]
    lines += ["## Every cell", ""] + table(
        ["backend", "precision", "BS", "samples/s", "latency mean / p50 / p99 (ms per batch)", "iterations",
         "fraction of limit, executed FLOPs", "fraction of limit, config FLOPs",
         "fraction of fp32 limit, config FLOPs", "peak RSS (MB)"],
        [_cell_row(x) for x in r["rows"]])
    acc = r["accuracy"].get("per_backend", {})
    lines += ["", "## Accuracy per artefact", ""] + table(
        ["backend", "accuracy (%)", "labels differing from PyTorch", "peak RSS (MB)"],
        [[n, fmt(e.get("accuracy"), 2) if "accuracy" in e else e.get("error", "—"),
          e.get("labels_differing_from_torch", "—"), fmt(e.get("rss_mb"), 0)]
         for n, e in ((n, acc.get(n, {})) for n in r["backends"])])
    if r.get("fusions") is not None:
        lines += ["", "ORT fusions on the throughput model's graph: " +
                  (", ".join(f"{k} x{v}" for k, v in r["fusions"].items()) or "none") +
                  " (EmbedLayerNormalization does not fuse: the exporter folds the position ids into a constant)."]
    lines += dynamic_section_lines(r.get("dynamic_length"))
    lines += real_job_section_lines(r.get("real_job"))
    lines += ["", "## Targets (ratios measured in this run)", ""] + table(
        ["target", "ratio", "met"], [[t["target"], fmt(t["ratio"], 2) + _target_extra(t), "yes" if t["met"] else "no"]
                                     for t in r["targets"]])
    lines += ["", f"Elapsed: {r['elapsed_s']:.0f} s. Every figure: benchmark.json; plot: benchmark.png.", ""]
    return "\n".join(lines)


def _setting_lines(r: dict) -> list:
    tp, m, roof = r["throughput_model"], r["machine"], r["roofline"]
    lim, shape = tp["limit_samples_per_s"], tp["shape"]
    lines = [f"- Machine: {m['cpu']}, {m['threads']} threads for every backend; load average "
             f"{r['load_average_start'][0]:.2f} at start, {r['load_average_end'][0]:.2f} at end "
             "(other processes may have been loading the CPU).",
             "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
             f"- Throughput model: TinyBERT-{shape['num_hidden_layers']}L-{shape['hidden_size']}D "
             f"({shape['num_attention_heads']} heads, intermediate {shape['intermediate_size']}), seq {tp['seq_len']}, "
             f"{'random weights generated here' if tp['random_weights'] else tp['checkpoint']}; "
             f"{tp['gflop_per_sample']:.3f} GFLOP/sample as its config defines it (every token through every "
             f"layer: the limit's yardstick); the exported graphs and the PyTorch module compute "
             f"{tp.get('executed_gflop_per_sample', tp['gflop_per_sample']):.3f} (the last layer for the [CLS] row "
             "only, the one the classifier reads; same logits). Samples/s = batch / median batch latency.",
             f"- Machine limit (best engine on square GEMMs of {roof['gemm_size']}, {roof['threads']} threads, best of "
             f"the run's start and end): fp32 {fmt(roof['gflops']['fp32'])} GFLOP/s -> {fmt(lim['fp32'])} samples/s; int8 "
             f"{fmt(roof['gflops']['int8'])} GOP/s -> {fmt(lim['int8'])} samples/s; bf16 {fmt(roof['gflops']['bf16'])} "
             f"GFLOP/s -> {fmt(lim['bf16'])} samples/s."]
    a = r["accuracy"]
    if "skipped" in a:
        lines.append(f"- Accuracy: skipped ({a['skipped']}).")
    else:
        lines.append(f"- Accuracy: {a['checkpoint']} ({a['shape']['layers']} layers, hidden {a['shape']['hidden']}) on "
                     f"{a['tsv']} ({a['samples']} samples) through preprocess -> inference -> postprocess, once per "
                     f"artefact at BS {a['batch_size']} (accuracy does not depend on the batch). INT8 calibration: "
                     f"{a['calibration_tsv']} (unlabelled).")
    return lines


def _published_shape_table(r: dict) -> list:
    """BS rows x backends, the published cards beside them; ★ the recommended artefact, (default) auto's pick."""
    names, pub = list(r["backends"]), r["published"]
    acc = r["accuracy"].get("per_backend", {})
    header = ["BS"] + names + [f"{card} (published, not measured here)" for card in PUBLISHED_CARDS]
    rows = [["accuracy (%)"] + [fmt(acc.get(n, {}).get("accuracy"), 2) for n in names]
            + [pub["accuracy"]["310"], pub["accuracy"]["310P"], "—"]]
    for bs in r["batch_sizes"]:
        cells = []
        for n in names:
            text = fmt(rate(r["rows"], n, bs))
            if at_bs(r["recommended_per_bs"], bs) == n:
                text = f"**{text}** ★"
            elif at_bs(r["default_fp32"], bs) == n:
                text = f"{text} (default)"
            cells.append(text)
        rows.append([bs] + cells + [fmt(at_bs(pub["fps"][card], bs), 2) for card in PUBLISHED_CARDS])
    return table(header, rows)


def _cell_row(x: dict) -> list:
    if "samples_per_s" not in x:
        return [x["backend"], x["precision"], x["batch_size"], f"failed: {x.get('error')}"] + [""] * 6
    lat = x["latency_ms"]
    return [x["backend"], x["precision"], x["batch_size"], f"{x['samples_per_s']:.1f}",
            f"{lat['mean']:.2f} / {lat['p50']:.2f} / {lat['p99']:.2f}", x["iterations"],
            fmt(x.get("executed_work_efficiency"), 2), fmt(x.get("fraction_of_limit"), 2),
            fmt(x.get("fraction_of_fp32_limit"), 2), f"{x['rss_mb']:.0f}"]


def _target_extra(t: dict) -> str:
    extra = ""
    if "per_bs" in t:
        extra = " (per BS: " + ", ".join(f"{k}: {v}" for k, v in t["per_bs"].items()) + ")"
    if "vs_issue_figures" in t:
        extra = "; vs the issue's idle-machine peer figures: " + "; ".join(
            f"{p} " + ", ".join(f"bs{k} {v}x" for k, v in d.items()) for p, d in t["vs_issue_figures"].items())
    if t.get("executed_work_efficiency") is not None:
        extra += f" (on the FLOPs the graph executes, the GEMM efficiency is {t['executed_work_efficiency']:.2f})"
    return extra


# ---------------------------------------------------------------- the dynamic-length section (dynamic.py)
def _section_head(section: Optional[dict], title: str) -> Optional[list]:
    """A section's heading lines, with its reason when it was skipped; None when the report has no such section."""
    if not section:
        return None
    lines = ["", f"## {title}", ""]
    return lines + [f"Skipped: {section['skipped']}."] if "skipped" in section else lines


def dynamic_section_lines(section: Optional[dict]) -> list:
    lines = _section_head(section, "Dynamic length (length-aware batching) vs static-64, end to end")
    if lines is None or "skipped" in section:
        return lines or []
    return lines + [
        f"Files in, result folder out, on the real checkpoint over {section['tsv']}; best of {section['repeats']} "
        "alternating run(s) per path; both result folders scored by postprocessing (docs/dynamic.md).", "",
        dynamic_rows_table(section["rows"]), "",
        _dynamic_target_line(section["target"])]


def _dynamic_target_line(target: dict) -> str:
    if target["ratio"] is None:
        return f"Target: {target['target']}: no batch size >= {DYNAMIC.min_batch} in this run."
    return (f"Target: {target['target']}: worst ratio {target['ratio']:.2f}x; "
            f"{'met' if target['met'] else 'NOT met'} in this run.")


def dynamic_rows_table(rows: Sequence[dict]) -> str:
    """The static-64 vs length-aware rows (dynamic.compare_batch) as one Markdown table."""
    def cells(r):
        acc = (f"{r['accuracy_static']:.4f} / {r['accuracy_dynamic']:.4f}"
               if r["accuracy_static"] is not None else "n/a")
        streams = r.get("streams") or {}
        return [r["backend"], r["batch"], f"{r['static_sps']:.1f}", f"{r['dynamic_sps']:.1f}", f"{r['ratio']:.2f}x",
                f"{r['static_tokens']} / {r['padded_tokens']} / {r['real_tokens']}", f"{r['token_reduction']:.2f}x",
                f"{streams.get('static_best', 1)} / {streams.get('dynamic', 1)}",
                "yes" if r["labels_equal"] else "NO", f"{r['max_logit_diff']:.2e}", acc]

    return "\n".join(table(["backend", "BS", "static-64 samples/s", "dynamic samples/s", "ratio",
                            "tokens static / computed / real", "token reduction", "streams static / dynamic",
                            "labels equal", "max logit diff", "acc static / dynamic"], [cells(r) for r in rows]))


# ---------------------------------------------------------------- the real-job section (realjob.py)
def real_job_section_lines(section: Optional[dict]) -> list:
    lines = _section_head(section, "Real job: plans end to end vs the limit of the real job")
    if lines is None or "skipped" in section:
        return lines or []
    g, bs = section["gemm_gflops"], REAL_JOB.quoted_bs
    lines += [f"bert_bin in, result folder out, {section['tsv']}, BS {section['batch']}, best of {section['repeats']} "
              "warm interleaved runs on an open plan (\"first run\": the cold run before them, its compiles "
              "included, as one command pays them). Real-job limit = GEMM rate of the precision (this run: "
              + ", ".join(f"{p} {g.get(p) or 'n/a'}" for p in PRECISIONS) + " GFLOP/s) / FLOPs of the real tokens "
              f"([CLS]-only last layer). Published {' / '.join(PUBLISHED_CARDS)} (TinyBERT-4L-312D, BS {bs}): "
              + " / ".join(f"{PUBLISHED['fps'][card][bs]:.2f}" for card in PUBLISHED_CARDS)
              + " samples/s (not measured here).", ""]
    lines += table(["model", "precision", "plan", "samples/s", "first run", "real-job limit", "fraction", "acc",
                    "labels differing from PyTorch", "compile s"],
                   [[x["model"], x["precision"], f"{x['kind']}: {x['plan']}", f"{x['samples_per_s']:.1f}",
                     f"{x['samples_per_s_first_run']:.1f}" if x.get("samples_per_s_first_run") else "-",
                     f"{x['real_job_limit']:.0f}" if x["real_job_limit"] else "n/a",
                     f"{x['fraction_of_real_job_limit']:.2f}" if x["fraction_of_real_job_limit"] is not None else "n/a",
                     f"{x['accuracy']:.4f}" if x["accuracy"] is not None else "n/a",
                     x["labels_differ_from_pytorch"], x["compile_s"] or "-"] for x in section["rows"]])
    lines.append("")
    if not g.get("bf16") and any(x["precision"] == "bf16" for x in section["rows"]):
        lines += ["This CPU has no bf16 instructions (avx512_bf16, amx_bf16): OpenVINO ran the bf16 plans in f32, "
                  "so they have no bf16 limit.", ""]
    if section.get("peak_rss_mb"):
        per_job = section.get("peak_rss_mb_per_job")
        if per_job:
            lines.append(f"Peak RSS, each precision's planner and plans in their own process: highest "
                         f"{section['peak_rss_mb']:.0f} MB (" + ", ".join(f"{k} {v:.0f}" for k, v in per_job.items())
                         + " MB).")
        else:
            lines.append(f"Peak RSS of the whole section (every planner and plan, one process): "
                         f"{section['peak_rss_mb']:.0f} MB.")
        lines.append("")
    for t in section["targets"]:
        ratio = f"{t['ratio']:.2f}" if t["ratio"] is not None else "n/a"
        lines.append(f"- {t['target']}: {ratio} ({'met' if t['met'] else 'NOT met'})")
    return lines
