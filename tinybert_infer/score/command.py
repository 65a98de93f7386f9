"""python -m tinybert_infer score --tsv PATH [--engine local|ray] [--format tsv|parquet] ..."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

from tinybert_infer.layout import DEFAULT_RESULT_DIR, SEQ_LEN, default_model_dir
from tinybert_infer.progress import progress
from tinybert_infer.score.corpus import (DEFAULT_CHUNK_ROWS, corpus_is_labelled, estimated_rows, first_texts, label_set,
                                         resolve_shards)
from tinybert_infer.score.output import FORMATS, ScoreFolder
from tinybert_infer.score.scorer import DEFAULT_BATCH, SCORE_BACKENDS, SCORE_PRECISIONS, make_score_plan, make_scorer

ENGINES = ("local", "ray")
TIMING_ROWS = 1024  # the corpus's first sentences, which the planner times its candidates on


def add_command(sub):
    from tinybert_infer.cli.args import add_model_dir_arg, positive_int

    p = sub.add_parser("score", help="score a corpus (TSV, folder of TSV shards, glob) -> result/<timestamp>/"
                                     "predictions.tsv, here or on a Ray cluster")
    p.add_argument("--tsv", required=True, help="a GLUE TSV, a folder of .tsv shards, or a glob (quote it)")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local (default: this host, streaming) or ray (Ray Data; $RAY_ADDRESS or a local Ray)")
    p.add_argument("--format", choices=FORMATS, default="tsv", help="predictions.tsv (default) or .parquet")
    p.add_argument("--backend", choices=SCORE_BACKENDS, default=None,
                   help="one exact fp32 runtime (default onnxruntime; openvino runs with f32 pinned)")
    p.add_argument("--precision", choices=SCORE_PRECISIONS, default=None,
                   help="let the run planner choose the fastest plan here: fp32 (exact), bf16, int8, or auto (the "
                        "fastest within 0.3 points of fp32 on the labelled dev set); see docs/plan.md")
    p.add_argument("--data_dir", type=Path, default=None,
                   help="--precision bf16/int8/auto: folder with the labelled dev.tsv (the gate) and test.tsv "
                        "(int8 calibration); default glue_dir/SST-2")
    p.add_argument("--model", "-m", type=Path, default=None,
                   help="dynamic-shape ONNX (default TinyBERT_sim_dyn.onnx, from export --dynamic)")
    add_model_dir_arg(p)
    p.add_argument("--batch_size", "--batchsize", type=positive_int, default=DEFAULT_BATCH,
                   help=f"sentences per inference call, length-aware within each chunk (default {DEFAULT_BATCH})")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="local: intra-op threads (default: physical cores); ray: see --cpus_per_actor")
    p.add_argument("--max_seq_length", type=positive_int, default=SEQ_LEN)
    p.add_argument("--chunk_rows", type=positive_int, default=DEFAULT_CHUNK_ROWS,
                   help=f"rows read, tokenised and scored together (= one Ray block; default {DEFAULT_CHUNK_ROWS})")
    p.add_argument("--output", "-o", type=Path, default=Path(DEFAULT_RESULT_DIR), help="result root (default result)")
    p.add_argument("--output_dirname", default=None)
    g = p.add_argument_group("--engine ray (see docs/ray.md)")
    g.add_argument("--cpus_per_actor", type=positive_int, default=None,
                   help="CPUs Ray gives each scoring actor = its intra-op threads (default 2, or the largest "
                        "node's CPUs if fewer; see docs/ray.md)")
    g.add_argument("--actors", type=positive_int, default=None,
                   help="scoring actors (default: the cluster's CPUs / --cpus_per_actor)")
    p.set_defaults(func=cmd_score)


def cmd_score(args) -> int:
    summary, folder = score_corpus(args.tsv, engine=args.engine, fmt=args.format, backend=args.backend,
                                   precision=args.precision, data_dir=args.data_dir, model=args.model,
                                   model_dir=args.model_dir or default_model_dir(),
                                   batch_size=args.batch_size, threads=args.threads,
                                   max_seq_length=args.max_seq_length, chunk_rows=args.chunk_rows,
                                   output_root=args.output, output_dirname=args.output_dirname,
                                   cpus_per_actor=args.cpus_per_actor, actors=args.actors)
    print(f"[INFO] {summary['sentences']} sentences in {summary['shards']} shard(s), engine {summary['engine']}, "
          f"{summary['throughput']:.1f} sentences/s")
    if summary.get("accuracy") is not None:
        print(f"acc:{summary['accuracy']:.4f}")
    print(f"result folder: {folder.name}")
    return 0


def _versions() -> dict:
    import importlib.metadata as md

    found = {"python": platform.python_version()}
    for name in ("numpy", "onnxruntime", "openvino", "torch", "transformers", "pyarrow", "ray"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def score_corpus(spec, *, engine: str = "local", fmt: str = "tsv", backend=None, precision=None, data_dir=None,
                 model=None, model_dir, batch_size: int = DEFAULT_BATCH, threads=None, max_seq_length: int = SEQ_LEN,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, output_root=DEFAULT_RESULT_DIR, output_dirname=None,
                 cpus_per_actor=None, actors=None, show_progress: bool = True):
    """Score every sentence of the corpus; returns (summary, result folder). Nothing is published unless
    every row of every shard was scored exactly once."""
    shards = resolve_shards(spec)
    runner = None
    if engine == "ray":
        from tinybert_infer.score.ray_engine import RayEngine

        # Connected first: the actors' CPUs (default: from the cluster's nodes) are the plan's threads.
        runner = RayEngine(cpus_per_actor=cpus_per_actor, actors=actors)  # no ray package: one line, first
        threads = runner.cpus_per_actor
    try:
        return _score(shards, spec, runner, engine=engine, fmt=fmt, backend=backend, precision=precision,
                      data_dir=data_dir, model=model, model_dir=model_dir, batch_size=batch_size, threads=threads,
                      max_seq_length=max_seq_length, chunk_rows=chunk_rows, output_root=output_root,
                      output_dirname=output_dirname, show_progress=show_progress)
    finally:
        if runner is not None:
            runner.shutdown()


def _score(shards, spec, runner, *, engine, fmt, backend, precision, data_dir, model, model_dir, batch_size,
           threads, max_seq_length, chunk_rows, output_root, output_dirname, show_progress):
    timing_texts = first_texts(shards[0], TIMING_ROWS) if precision else []
    # One local scorer pays its plan's setup once for the whole corpus; Ray's actors each pay it on their share.
    job_size = estimated_rows(shards, timing_texts, TIMING_ROWS) if precision and engine == "local" else None
    plan = make_score_plan(backend=backend, precision=precision, model=model, model_dir=model_dir,
                           data_dir=data_dir, batch_size=batch_size, threads=threads, max_seq_length=max_seq_length,
                           chunk_rows=chunk_rows, timing_texts=timing_texts, job_size=job_size)
    scorer = make_scorer(plan)  # on the driver too: a bad model fails here, as one line, before any work
    num_labels = scorer.num_labels()
    labels = label_set(num_labels)
    labelled = corpus_is_labelled(shards, labels)
    described = scorer.describe()
    summary = {"args": list(sys.argv), "engine": engine, "input": str(spec), "plan": described,
               "versions": _versions()}
    with ScoreFolder(output_root, shards, fmt=fmt, num_labels=num_labels, labelled=labelled,
                     output_dirname=output_dirname) as out, \
            progress(desc=f"score {engine}", unit="sent", enabled=show_progress) as bar:
        start = time.perf_counter()
        if engine == "ray":
            scorer.close()
            scorer = None
            summary["ray"] = runner.run(shards, plan, out.writer, labels, bar=bar)
        else:
            from tinybert_infer.score.local import run_local

            summary["local"] = run_local(shards, scorer, out.writer, labels, bar=bar)
        wall = time.perf_counter() - start
        summary.update(wall_s=wall, throughput=out.writer.rows_written / wall if wall else 0.0)
        summary = out.publish(summary)
    return summary, out.dir
