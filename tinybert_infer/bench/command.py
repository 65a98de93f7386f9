"""The benchmark's commands of the one CLI (cli.main gives them its error and Ctrl-C handling):

    python -m tinybert_infer benchmark [--quick] ...   the results table (run.py), also bash test/benchmark.sh
    python -m tinybert_infer dynamic-bench ...         static-64 vs length-aware batching alone (dynamic.py)
    python -m tinybert_infer real-job ...              the real-job section alone (realjob.py)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tinybert_infer.fsutil import staged_file
from tinybert_infer.layout import default_data_dir, default_model_dir
from tinybert_infer.export.optimize import VARIANTS
from tinybert_infer.bench import dynamic, realjob, run
from tinybert_infer.progress import log_stderr


def add_command(sub):
    _add_benchmark(sub)
    _add_dynamic_bench(sub)
    _add_real_job(sub)


def _batch_sizes(text: str) -> list:
    from tinybert_infer.cli.args import positive_int

    return [positive_int(x) for x in text.split(",") if x]


def _names(text: str) -> list:
    return [x for x in text.split(",") if x]


def _write_json(path: Path, obj) -> None:
    """--json: the rows, whole or not at all."""
    with staged_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- benchmark
def _add_benchmark(sub):
    from tinybert_infer.cli.args import positive_int

    p = sub.add_parser("benchmark", help="the results table on this CPU: every backend, BS 1-64, accuracy, limit")
    p.add_argument("--out", type=Path, default=Path("."), help="where benchmark.{md,json,png} go (default: .)")
    p.add_argument("--quick", action="store_true", help="short timings, BS 1 and 8, accuracy on 96 dev sentences (CI)")
    p.add_argument("--batch_sizes", type=_batch_sizes, default=None, help="comma-separated (default 1,4,8,16,32,64)")
    p.add_argument("--backends", type=_names, default=None,
                   help=f"comma-separated subset of {','.join(VARIANTS)} (default: all)")
    p.add_argument("--threads", type=positive_int, default=None, help="threads for every backend (default: physical cores)")
    p.add_argument("--model_dir", type=Path, default=None, help="real checkpoint for accuracy (default: $TINYBERT_MODEL_DIR "
                                                                   "or ./SST-2_model)")
    p.add_argument("--data_dir", type=Path, default=None, help="GLUE SST-2 folder with dev.tsv (and test.tsv for INT8 "
                                                                  "calibration)")
    p.add_argument("--throughput_model", type=Path, default=None,
                   help="checkpoint timed for throughput (default: TinyBERT-4L-312D with random weights, generated)")
    p.add_argument("--work_dir", type=Path, default=None, help="exports and artefacts (default: <out>/benchmark_work)")
    p.add_argument("--accuracy_bs", type=positive_int, default=None,
                   help=f"BS of the accuracy runs (default {run.ACCURACY_BS})")
    p.add_argument("--accuracy_samples", type=positive_int, default=None,
                   help="score only the first N dev sentences (default: all; --quick: 96)")
    p.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args) -> int:
    report = run.run_benchmark(args.out, quick=args.quick, batch_sizes=args.batch_sizes, backends=args.backends,
                               threads=args.threads, model_dir=args.model_dir, data_dir=args.data_dir,
                               throughput_model=args.throughput_model, work_dir=args.work_dir,
                               accuracy_bs=args.accuracy_bs, accuracy_samples=args.accuracy_samples)
    print((Path(args.out) / "benchmark.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out / 'benchmark.md'}, {args.out / 'benchmark.json'}, {args.out / 'benchmark.png'} "
          f"in {report['elapsed_s']:.0f} s")
    return 0


# ---------------------------------------------------------------- dynamic-bench
def _add_dynamic_bench(sub):
    from tinybert_infer.cli.args import positive_int

    p = sub.add_parser("dynamic-bench", help="static-64 vs length-aware batching, end to end on SST-2 dev",
                       description=dynamic.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", type=Path, default=None)
    p.add_argument("--data_dir", type=Path, default=None)
    p.add_argument("--tsv", type=Path, default=None, help="default: <data_dir>/dev.tsv")
    p.add_argument("--backend", type=_names, default=["onnxruntime"],
                   help="onnxruntime (default), openvino or torch; comma-separated for several")
    p.add_argument("--batch_sizes", type=_batch_sizes, default=list(dynamic.BATCH_SIZES),
                   help="comma-separated (default " + ",".join(map(str, dynamic.BATCH_SIZES)) + ")")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--repeats", type=positive_int, default=2, help="alternating runs per path; best kept")
    pad = p.add_mutually_exclusive_group()
    pad.add_argument("--pad_multiple", type=positive_int, default=None)
    pad.add_argument("--buckets", default=None)
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new one under /tmp)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.set_defaults(func=cmd_dynamic_bench)


def cmd_dynamic_bench(args) -> int:
    """Exit 1 where a row's paths disagree (labels or logits); a ratio below target is only a note."""
    from tinybert_infer.run.length import parse_buckets
    from tinybert_infer.bench.report import dynamic_rows_table
    from tinybert_infer.bench.verdicts import dynamic_problems

    tsv = args.tsv or (args.data_dir or default_data_dir()) / "dev.tsv"
    work = args.work or Path(tempfile.mkdtemp(prefix="tinybert_dynamic_bench-"))
    rows = dynamic.run_dynamic_bench(model_dir=args.model_dir or default_model_dir(), tsv=tsv, work=work,
                                     batch_sizes=args.batch_sizes, backend_names=args.backend, threads=args.threads,
                                     repeats=args.repeats, pad_multiple=args.pad_multiple,
                                     buckets=parse_buckets(args.buckets) if args.buckets else None, log=log_stderr)
    print(dynamic_rows_table(rows))
    print(f"(end-to-end wall time, files in -> result folder out; best of {args.repeats} alternating runs; "
          f"scratch: {work})")
    if args.json:
        _write_json(args.json, rows)
    for line in dynamic_problems(rows):
        print(f"note: {line}")
    return 1 if any(not r["parity"] for r in rows) else 0


# ---------------------------------------------------------------- real-job
def _add_real_job(sub):
    from tinybert_infer.cli.args import positive_int

    p = sub.add_parser("real-job", help="each precision's static-64 and planned plan, end to end, vs the real-job "
                                        "limit", description=realjob.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", type=Path, default=None)
    p.add_argument("--data_dir", type=Path, default=None)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--batchsize", type=positive_int, default=realjob.BATCH_SIZE)
    p.add_argument("--precisions", type=_names, default=list(realjob.PRECISIONS))
    p.add_argument("--repeats", type=positive_int, default=2)
    p.add_argument("--no_4l", action="store_true", help="only the real checkpoint")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new one under /tmp)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--stability", type=positive_int, default=None, metavar="N",
                   help="instead: run the planner N times without its cache on the checkpoint, count its picks")
    p.set_defaults(func=cmd_real_job)


def cmd_real_job(args) -> int:
    from tinybert_infer.machine import default_threads
    from tinybert_infer.bench.limits import gemm_rates
    from tinybert_infer.bench.prepare import throughput_checkpoint
    from tinybert_infer.bench.report import real_job_section_lines

    threads = args.threads or default_threads()
    work = args.work or Path(tempfile.mkdtemp(prefix="tinybert_realjob-"))
    model_dir, data_dir = args.model_dir or default_model_dir(), args.data_dir or default_data_dir()
    if args.stability:
        results = realjob.stability_runs(model_dir, data_dir / "dev.tsv", work, precisions=args.precisions,
                                         batch=args.batchsize, threads=threads, runs=args.stability,
                                         log=log_stderr)
        for r in results:
            print(f"{r['precision']}: " + ", ".join(f"{label}: {n}/{r['runs']}" for label, n in r["picks"].items()))
            print(f"{r['precision']}, for a job of {r['job_size']} sentences (setup counted): "
                  + ", ".join(f"{label}: {n}/{r['runs']}" for label, n in r["picks_for_the_job"].items()))
        if args.json:
            _write_json(args.json, results)
        return 0
    section = realjob.real_job_section(model_dir=model_dir, data_dir=data_dir, work=work, threads=threads,
                                       rates=gemm_rates(threads, 2.0),
                                       throughput_checkpoint=None if args.no_4l else throughput_checkpoint(work),
                                       batch=args.batchsize, precisions=args.precisions, repeats=args.repeats,
                                       log=log_stderr)
    print("\n".join(real_job_section_lines(section)))
    if args.json:
        _write_json(args.json, section)
    return 0
