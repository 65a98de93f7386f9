"""`infer` (stage 4 on this host): ais_bench's options and result layout, on a CPU or GPU backend."""

from __future__ import annotations

from pathlib import Path

from tinybert_infer.errors import UsageError
from tinybert_infer.layout import INPUT_NAMES, SEQ_LEN, default_data_dir, default_model_dir, sim_onnx_name
from tinybert_infer.cli.args import (add_model_dir_arg, check_vocab, head_arg, model_vocab, non_negative_int,
                                     positive_int)


def add_command(sub):
    p = sub.add_parser("infer", help="ais_bench-compatible inference on this host (writes result/<timestamp>/)")
    p.add_argument("--model", "-m", type=Path, default=None,
                   help="ONNX model (default: TinyBERT_sim_bs<batchsize>.onnx)")
    p.add_argument("--batchsize", type=positive_int, default=None)
    p.add_argument("--input", "-i", default=None,
                   help="comma-separated input folders, one per model input, in order (omit for pure inference)")
    p.add_argument("--output", "-o", type=Path, default=None, help="result root (ais_bench: nothing saved without it)")
    p.add_argument("--output_dirname", default=None)
    p.add_argument("--outfmt", default="BIN", type=str.upper, choices=["TXT", "BIN", "NPY"])
    p.add_argument("--loop", "-l", type=positive_int, default=1)
    p.add_argument("--warmup_count", "--warmup-count", type=non_negative_int, default=1)
    p.add_argument("--pure_data_type", choices=["zero", "random"], default="zero")
    p.add_argument("--backend", default="auto",
                   help="auto (default: the fastest exact-fp32 artefact, measured here and cached; see "
                        "docs/performance.md), onnxruntime, openvino or torch")
    p.add_argument("--precision", choices=["fp32", "int8", "bf16"], default="fp32",
                   help="with --backend auto: fp32 (default, PyTorch's labels), or the faster low-precision int8/bf16")
    add_model_dir_arg(p)
    head_arg(p, "with --backend torch")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: runtime's choice)")
    p.add_argument("--streams", type=positive_int, default=None,
                   help="OpenVINO only: batches in flight, sharing the threads (default 1; 2 with --dynamic_length)")
    _add_length_args(p)
    p.set_defaults(func=cmd_infer)


def cmd_infer(args) -> int:
    from tinybert_infer.backends import make_backend
    from tinybert_infer.data.features import check_folder_tokenizer, manifest_digest
    from tinybert_infer.run.inference import run_files, run_pure
    from tinybert_infer.models.specs import run_model_record

    if args.output_dirname is not None and args.output is None:
        raise UsageError("--output_dirname needs --output")
    if args.dynamic_length or args.tsv is not None:
        return cmd_infer_by_length(args)
    onnx_path = _model_path(args, sim_onnx_name(args.batchsize) if args.batchsize else None)
    backend = make_backend(args.backend, onnx_path=onnx_path, checkpoint_dir=args.model_dir or default_model_dir(),
                           batch_size=args.batchsize, threads=args.threads, precision=args.precision,
                           streams=args.streams or 1, head=args.head)
    if args.input is None:
        report = run_pure(backend, batch_size=args.batchsize, loop=args.loop, warmup_count=args.warmup_count,
                          pure_data_type=args.pure_data_type)
    else:
        _require_output(args)
        from tinybert_infer.plan.planner import plan_of_backend

        dirs = [Path(d) for d in args.input.split(",") if d]
        extra = {"inputs_manifest_sha256": manifest_digest(dirs[0].parent), **run_model_record(backend, onnx_path),
                 "plan": plan_of_backend(backend, onnx_path, batch_size=args.batchsize, threads=args.threads).to_dict()}
        check_folder_tokenizer(dirs[0].parent, extra)
        report = run_files(backend, dirs, args.output, batch_size=args.batchsize, outfmt=args.outfmt,
                           output_dirname=args.output_dirname, loop=args.loop, warmup_count=args.warmup_count,
                           extra_summary=extra)
    _print_run(report)
    return 0


def _model_path(args, default_name):
    """--model, else the ModelZoo name for this run; only PyTorch runs without a graph."""
    onnx_path = args.model or (Path(default_name) if default_name else None)
    if args.backend != "torch" and onnx_path is None:
        raise UsageError("give --model or --batchsize")
    return onnx_path


def _require_output(args) -> None:
    if args.output is None:
        raise UsageError("give --output: results are only saved under an output root")


def _print_run(report, extra_block: str = "") -> None:
    from tinybert_infer.run.results import format_summary_block

    info = report.summary["backend"]
    versions = ", ".join(f"{k} {v}" for k, v in info.items() if k in ("onnxruntime", "torch", "openvino"))
    print(f"[INFO] backend: {info['backend']} ({versions}) model: {info.get('artefact')}")
    if report.result_dir is not None:
        print(f"[INFO] output path:{report.result_dir}")
    print(format_summary_block(report.summary))
    if extra_block:
        print(extra_block)
    if report.result_dir is not None:
        print(f"result folder: {report.result_dir.name}")


def _add_length_args(p):
    g = p.add_argument_group("length-aware batching (dynamic-shape backends; see docs/dynamic.md)")
    g.add_argument("--dynamic_length", action="store_true",
                   help="sort samples by length, pad each batch only to its longest member "
                        "(default model: TinyBERT_sim_dyn.onnx from export --dynamic)")
    pad = g.add_mutually_exclusive_group()
    pad.add_argument("--pad_multiple", type=positive_int, default=None,
                     help="round each batch's length up to a multiple of N (e.g. 8)")
    pad.add_argument("--buckets", default=None, help="round each batch's length up to one of these, e.g. 16,32,48,64")
    g.add_argument("--static_shapes", action="store_true",
                   help="OpenVINO: compile one static [batchsize, L] model per batch length (rounded up to "
                        "--buckets or --pad_multiple, default a multiple of 4) and reuse it: keeps its bf16/int8 "
                        "kernels on length-aware batches")
    g.add_argument("--tsv", type=Path, default=None,
                   help="a GLUE TSV fed directly instead of --input (tokenised with <model_dir>/vocab.txt)")
    g.add_argument("--max_seq_length", type=positive_int, default=SEQ_LEN, help="truncation for --tsv (default 64)")


def cmd_infer_by_length(args) -> int:
    """infer --dynamic_length and/or --tsv: samples fed through a plan (tinybert_infer.plan.planner, dynamic)."""
    from tinybert_infer.data.features import check_folder_tokenizer, manifest_digest
    from tinybert_infer.run.length import format_length_block, parse_buckets, read_sample_files, read_tsv_samples
    from tinybert_infer.layout import dynamic_sim_onnx_name
    from tinybert_infer.models.specs import check_graph_tokenizer

    if (args.tsv is None) == (args.input is None):
        raise UsageError("give exactly one of --input (preprocessed folders) and --tsv")
    _require_output(args)
    if (args.pad_multiple or args.buckets) and not args.dynamic_length:
        raise UsageError("--pad_multiple and --buckets need --dynamic_length")
    buckets = parse_buckets(args.buckets) if args.buckets else None
    model_dir = args.model_dir or default_model_dir()
    onnx_path = _model_path(args, dynamic_sim_onnx_name() if args.dynamic_length else (
        sim_onnx_name(args.batchsize) if args.batchsize else None))
    if args.tsv is not None:
        check_vocab(model_vocab(model_dir))
    if args.static_shapes and not args.dynamic_length:
        raise UsageError("--static_shapes needs --dynamic_length")
    model_record = _model_record(args.backend, model_dir, onnx_path, args.head)
    if args.tsv is not None:
        vocab = model_vocab(model_dir)
        if args.backend != "torch":  # torch tokenises with its own checkpoint's folder
            check_graph_tokenizer(onnx_path, vocab)
        samples = read_tsv_samples(args.tsv, vocab, args.max_seq_length)
    else:
        dirs = [Path(d) for d in args.input.split(",") if d]
        check_folder_tokenizer(dirs[0].parent, model_record)
        samples = read_sample_files(dirs, INPUT_NAMES)
        samples.summary_extra["inputs_manifest_sha256"] = manifest_digest(dirs[0].parent)
    samples.summary_extra.update(model_record)
    executor, extra = _length_executor(args, onnx_path, model_dir, buckets, samples)
    try:
        report = executor.run_samples(samples, args.output, outfmt=args.outfmt, output_dirname=args.output_dirname,
                                      loop=args.loop, warmup_count=args.warmup_count, extra_summary=extra)
    finally:
        executor.close()
    _print_run(report, format_length_block(report.summary))
    return 0


def _length_executor(args, onnx_path, model_dir, buckets, samples):
    """The plan a --dynamic_length/--tsv run executes: measured by the planner (--backend auto, no shape flags),
    OpenVINO's per-length static shapes (--static_shapes), or the named backend as given."""
    from tinybert_infer.backends import make_backend
    from tinybert_infer.run.length import default_streams
    from tinybert_infer.plan.planner import (PER_LENGTH_PAD_MULTIPLE, Plan, PlanExecutor, build_candidate_artefacts,
                                             make_plan, plan_of_backend)

    if args.dynamic_length and args.batchsize is None:
        raise UsageError("this backend has no static batch: give --batchsize")
    if args.static_shapes:
        if args.backend not in ("auto", "openvino"):
            raise UsageError("--static_shapes is OpenVINO's: use --backend openvino or auto")
        from tinybert_infer.export.optimize import artefact_path
        from tinybert_infer.machine import default_threads

        name = f"openvino-{args.precision}"
        threads = args.threads or default_threads()
        rounding = args.pad_multiple or (None if buckets else PER_LENGTH_PAD_MULTIPLE)
        plan = Plan(name, str(artefact_path(Path(onnx_path), name)), "length", args.batchsize, "per_length",
                    buckets, rounding, streams=args.streams or 1, threads=threads)
        build_candidate_artefacts([plan], onnx_path, batch_size=args.batchsize, threads=threads,
                                  checkpoint_dir=model_dir, calibration_tsv=_calibration_tsv())
        return PlanExecutor(plan), {}
    if args.dynamic_length and args.backend == "auto" and not (args.streams or args.pad_multiple or buckets):
        static = Path(sim_onnx_name(args.batchsize))  # the recipe's static model, a candidate where it is at hand
        from tinybert_infer.models.checkpoint import find_vocab_file
        from tinybert_infer.plan.planner import dev_gate

        gate = None if args.precision == "fp32" else dev_gate(default_data_dir() / "dev.tsv",
                                                              find_vocab_file(model_dir))
        choice = make_plan(dynamic_model=onnx_path, precision=args.precision, batch_size=args.batchsize,
                           threads=args.threads, data=samples.feats, checkpoint_dir=model_dir,
                           static_model=static if static.is_file() and samples.width == SEQ_LEN else None,
                           calibration_tsv=_calibration_tsv(), gate=gate, job_size=samples.count)
        return PlanExecutor(choice.plan), {"plan_selection": choice.selection}
    backend = make_backend(args.backend, onnx_path=onnx_path, checkpoint_dir=model_dir,
                           batch_size=None if args.dynamic_length else args.batchsize, threads=args.threads,
                           precision=args.precision,
                           streams=args.streams or default_streams(args.backend, args.threads, args.dynamic_length),
                           head=args.head)
    plan = plan_of_backend(backend, onnx_path, batching="length" if args.dynamic_length else "static",
                           batch_size=args.batchsize, buckets=buckets, pad_multiple=args.pad_multiple,
                           threads=args.threads)
    return PlanExecutor(plan, backend), {}


def _model_record(backend_name: str, model_dir: Path, onnx_path, head) -> dict:
    """The head and tokenizer switches a run records, known before any backend is built (specs.run_model_record)."""
    from tinybert_infer.models.specs import checkpoint_record, run_model_record

    if backend_name == "torch":
        from tinybert_infer.models.checkpoint import read_checkpoint

        return checkpoint_record(read_checkpoint(model_dir, head=head))
    return run_model_record(None, onnx_path)


def _calibration_tsv() -> Path:
    """INT8 calibration: the unlabelled test.tsv beside dev.tsv, never the scored data."""
    return default_data_dir() / "test.tsv"
