"""`benchmark`: the published TinyBERT results table, reproduced on this CPU for every backend we run.

Throughput: the TinyBERT-4L-312D shape with random weights generated here (the model of the published table).
Accuracy: the real checkpoint (--model_dir) through the real pipeline (preprocess -> run_files -> evaluate),
once per artefact at one batch size (accuracy does not depend on the batch). Every (backend, batch) cell and
every accuracy run happens in its own fresh process, so peak RSS is that backend's alone.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from tinybert_infer.errors import UsageError
from tinybert_infer.fsutil import staged_file, write_json_atomic
from tinybert_infer.layout import default_data_dir, default_model_dir
from tinybert_infer.progress import log_stderr
from tinybert_infer.export.optimize import VARIANTS, nncf_available, variant
from tinybert_infer.bench.accuracy import accuracy_section
from tinybert_infer.bench.cells import roofline
from tinybert_infer.bench.limits import merge_rooflines
from tinybert_infer.machine import cpu_model
from tinybert_infer.bench.plot import render_plot
from tinybert_infer.bench.prepare import subset_tsv
from tinybert_infer.bench.report import render_markdown
from tinybert_infer.bench.targets import PUBLISHED, PUBLISHED_BATCH_SIZES
from tinybert_infer.bench.throughput import ThroughputModel, build_artefacts_per_bs, throughput_rows
from tinybert_infer.bench.verdicts import summarise

BATCH_SIZES = PUBLISHED_BATCH_SIZES
QUICK_BATCH_SIZES = (1, 8)
ACCURACY_BS = 32
QUICK_ACCURACY_SAMPLES = 96


def machine_info(threads: int) -> dict:
    import numpy
    import onnx
    import onnxruntime
    import openvino
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                "openvino": openvino.__version__.split("-")[0], "onnx": onnx.__version__, "numpy": numpy.__version__}
    if nncf_available():
        import nncf

        versions["nncf"] = nncf.__version__
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": threads, "platform": platform.platform(),
            "versions": versions}


def run_benchmark(out: Path, *, quick: bool = False, batch_sizes=None, backends=None, threads: Optional[int] = None,
                  model_dir=None, data_dir=None, throughput_model=None, work_dir=None, accuracy_bs: Optional[int] = None,
                  accuracy_samples: Optional[int] = None, log=log_stderr) -> dict:
    """Every section in order, then benchmark.{json,md,png} in `out`; returns the report (the JSON's content)."""
    from tinybert_infer.machine import default_threads
    from tinybert_infer.plan.timing import QUICK, TimingPolicy

    started = time.time()
    out = Path(out)
    work = Path(work_dir) if work_dir else out / "benchmark_work"
    work.mkdir(parents=True, exist_ok=True)
    threads = threads or default_threads()
    batch_sizes = list(batch_sizes or (QUICK_BATCH_SIZES if quick else BATCH_SIZES))
    names = [variant(n).name for n in (backends or VARIANTS)]
    if "openvino-int8" in names and not nncf_available():
        log("openvino-int8 left out: nncf is not installed (pip install -r requirements.txt)")
        names.remove("openvino-int8")
    policy = QUICK if quick else TimingPolicy()
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    accuracy_bs = accuracy_bs or (8 if quick else ACCURACY_BS)
    accuracy_samples = accuracy_samples if accuracy_samples is not None else (QUICK_ACCURACY_SAMPLES if quick else None)
    roofline_seconds = 0.3 if quick else 2.0
    report = {"title": "TinyBERT SST-2 offline inference on this CPU", "quick": quick,
              "machine": machine_info(threads), "load_average_start": list(os.getloadavg()),
              "published": PUBLISHED, "batch_sizes": batch_sizes,
              "backends": {n: asdict(VARIANTS[n]) for n in names}, "timing_policy": asdict(policy)}

    log(f"[1/4] GEMM roofline ({threads} threads)")
    roof = roofline(threads, roofline_seconds)
    if "error" in roof:
        raise UsageError(f"GEMM measurement failed: {roof['error']}")
    report["roofline"] = roof["roofline"]

    log("[2/4] throughput model and artefacts")
    model = ThroughputModel(throughput_model, work)
    model.set_roofline(report["roofline"])
    report["throughput_model"] = model.section()
    artefacts = build_artefacts_per_bs(model, names, batch_sizes, threads=threads, out_dir=work / "throughput", log=log)
    fused = "onnxruntime-fused"
    report["fusions"] = artefacts[batch_sizes[0]][fused].notes.get("fused") if fused in names else None
    report["artefact_notes"] = {str(bs): {n: a.notes for n, a in arts.items() if a.notes} for bs, arts in artefacts.items()}

    log(f"[3/4] throughput: {len(names)} backends x {len(batch_sizes)} batch sizes")
    rows = throughput_rows(model, artefacts, names, batch_sizes, threads=threads, policy=policy, log=log)
    report["rows"] = rows

    log("[4/4] accuracy through the pipeline")
    # Again at the end: on a shared machine one window can be depressed by other load; the limit is the best seen.
    again = roofline(threads, roofline_seconds)
    if "error" not in again:
        report["roofline"] = merge_rooflines(report["roofline"], again["roofline"])
        model.set_roofline(report["roofline"])
        for row in rows:
            if "samples_per_s" in row:
                model.add_fractions(row)
    report["accuracy"] = accuracy_section(names, model_dir=model_dir, data_dir=data_dir, work=work, bs=accuracy_bs,
                                          threads=threads, samples=accuracy_samples, log=log)
    log("[dynamic length] static-64 vs length-aware batching, end to end on the real checkpoint (docs/dynamic.md)")
    from tinybert_infer.bench.dynamic import dynamic_length_section

    dev = data_dir / "dev.tsv"
    report["dynamic_length"] = dynamic_length_section(
        names, model_dir=model_dir, tsv=subset_tsv(dev, accuracy_samples, work) if dev.is_file() else dev,
        work=work / "dynamic_length", batch_sizes=batch_sizes, threads=threads, repeats=1 if quick else 2, log=log)
    if quick:  # a planner per precision and model: minutes, not for CI
        report["real_job"] = {"skipped": "--quick run (the full benchmark has it)"}
    else:
        log("[real job] each precision's static-64 and planned plan, end to end, vs the real-job limit")
        from tinybert_infer.bench.realjob import real_job_section

        report["real_job"] = real_job_section(model_dir=model_dir, data_dir=data_dir, work=work / "real_job",
                                              threads=threads, rates=report["roofline"],
                                              throughput_checkpoint=model.checkpoint, log=log)
    report.update(summarise(report, model.limits))
    report["load_average_end"] = list(os.getloadavg())
    report["elapsed_s"] = time.time() - started
    write_outputs(report, out)
    return report


def write_outputs(report: dict, out: Path) -> None:
    """benchmark.json, .md and .png, each written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "benchmark.json", jsonable(report))
    with staged_file(out / "benchmark.md") as tmp:
        tmp.write_text(render_markdown(report), encoding="utf-8")
    with staged_file(out / "benchmark.png") as tmp:
        render_plot(report, tmp)


def jsonable(obj):
    """JSON keys must be strings; batch sizes are ints in memory."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
