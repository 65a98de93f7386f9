"""Command line: a thin layer over the library. `python -m tinybert_infer <command> --help`."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

from tinybert_infer.errors import INTERRUPTED_EXIT, FileSystemError, PipelineError, UsageError
from tinybert_infer.layout import (DEFAULT_BIN_DIR, DEFAULT_OPSET, FILE_DTYPES, INPUT_NAMES, SEQ_LEN, default_data_dir,
                                   default_model_dir, sim_onnx_name)


def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer >= 0")


def add_model_dir_arg(p):
    p.add_argument("--model_dir", type=Path, default=None,
                   help="checkpoint folder: TinyBERT or Hugging Face BERT classifier, or a HF cache entry "
                        "(default: $TINYBERT_MODEL_DIR or ./SST-2_model)")


def _head_arg(p, what: str):
    from tinybert_infer.models.specs import SPECS

    p.add_argument("--head", choices=list(SPECS), default=None,
                   help=f"classifier head {what}: tinybert = classifier(relu(pooler)), hf = transformers' "
                        "BertForSequenceClassification, classifier(pooler) (default: from config.json's "
                        "architectures; none means tinybert)")


def _model_vocab(model_dir: Path) -> Path:
    """The checkpoint's vocabulary: vocab.txt or tokenizer.json (also inside a Hugging Face cache entry)."""
    from tinybert_infer.models.checkpoint import VOCAB_FILE, find_vocab_file, resolve_folder
    from tinybert_infer.errors import CheckpointError

    try:
        return find_vocab_file(resolve_folder(model_dir))
    except CheckpointError:
        return model_dir / VOCAB_FILE  # check_vocab reports it as before: vocabulary file not found


def _data_dir_arg(p):
    p.add_argument("--data_dir", type=Path, default=None,
                   help="GLUE SST-2 folder (default: $TINYBERT_DATA_DIR or ./glue_dir/SST-2)")


# ---------------------------------------------------------------- export (stage 1)
def add_export(sub):
    p = sub.add_parser("export", help="checkpoint -> TinyBERT_bsBS.onnx and TinyBERT_sim_bsBS.onnx")
    p.add_argument("--batch_size", "-b", type=positive_int, default=None, help="static batch (required unless --dynamic)")
    p.add_argument("--dynamic", action="store_true",
                   help="write TinyBERT_dyn.onnx and TinyBERT_sim_dyn.onnx (dynamic batch and sequence axes)")
    add_model_dir_arg(p)
    _data_dir_arg(p)
    p.add_argument("--output_dir", type=Path, default=Path("."))
    p.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help="ONNX opset (default 11: every atc takes it)")
    p.add_argument("--validate_count", type=positive_int, default=None,
                   help="dev sentences checked against PyTorch (default 64; 16 with --dynamic, at 12 shapes each)")
    p.add_argument("--full_last_layer", action="store_true",
                   help="compute every token in the last layer too (default: only the [CLS] row the classifier "
                        "reads, same logits, about 1/layers fewer FLOPs)")
    _head_arg(p, "to export")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from tinybert_infer.export.onnx import export_checkpoint

    model_dir = args.model_dir or default_model_dir()
    tsv = (args.data_dir or default_data_dir()) / "dev.tsv"
    if args.dynamic:
        from tinybert_infer.export.onnx import export_dynamic_checkpoint

        report = export_dynamic_checkpoint(model_dir, args.output_dir, opset=args.opset, tsv_path=tsv,
                                           cls_only_last_layer=not args.full_last_layer, head=args.head,
                                           **({"validate_count": args.validate_count} if args.validate_count else {}))
    elif args.batch_size is None:
        raise UsageError("give --batch_size (or --dynamic for dynamic batch and sequence axes)")
    else:
        report = export_checkpoint(model_dir, args.batch_size, args.output_dir, opset=args.opset,
                                   tsv_path=tsv, validate_count=args.validate_count or 64,
                                   cls_only_last_layer=not args.full_last_layer, head=args.head)
    print(f"checkpoint: {model_dir}")
    print(f"head: {report.head}")
    print(f"validated on {report.validation_source} with ONNX Runtime")
    print(f"{report.onnx_path}: max |logit diff| vs PyTorch = {report.max_abs_diff:.3e}")
    print(f"{report.sim_path}: max |logit diff| vs PyTorch = {report.max_abs_diff_sim:.3e}")
    for name, (plain, sim) in report.reference_diffs.items():
        print(f"{report.onnx_path}: max |logit diff| vs {name} = {plain:.3e}")
        print(f"{report.sim_path}: max |logit diff| vs {name} = {sim:.3e}")
    return 0


# ---------------------------------------------------------------- preprocess (stage 3)
def add_preprocess(sub):
    p = sub.add_parser("preprocess", help="GLUE TSV -> bert_bin/{input_ids,segment_ids,input_mask}/input<i>.bin")
    _data_dir_arg(p)
    p.add_argument("--tsv", type=Path, default=None, help="TSV file (default: <data_dir>/dev.tsv)")
    add_model_dir_arg(p)
    p.add_argument("--vocab", type=Path, default=None, help="vocab.txt (default: <model_dir>/vocab.txt)")
    p.add_argument("--output_dir", "--save_dir", type=Path, default=Path(DEFAULT_BIN_DIR))
    p.add_argument("--max_seq_length", type=positive_int, default=SEQ_LEN)
    p.add_argument("--dtype", choices=list(FILE_DTYPES), default="int64",
                   help="file dtype: int64 (default, ModelZoo's), or int32 for an OM whose inputs atc made int32")
    p.set_defaults(func=cmd_preprocess)


def cmd_preprocess(args) -> int:
    from tinybert_infer.data.features import preprocess

    tsv = args.tsv or (args.data_dir or default_data_dir()) / "dev.tsv"
    vocab = args.vocab or _model_vocab(args.model_dir or default_model_dir())
    _check_vocab(vocab)
    report = preprocess(tsv, vocab, args.output_dir, max_seq_length=args.max_seq_length, dtype=args.dtype)
    kind = "labelled" if report.labelled else "unlabelled"
    print(f"{tsv}: {report.count} {kind} sentences -> {report.out_dir}/"
          f"{{{','.join(INPUT_NAMES)}}}/input0.bin..input{report.count - 1}.bin ({args.dtype})")
    return 0


def _check_vocab(vocab: Path) -> None:
    from tinybert_infer.models.checkpoint import check_vocab

    check_vocab(vocab)


# ---------------------------------------------------------------- infer (stage 4, host backends)
def add_infer(sub):
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
    _head_arg(p, "with --backend torch")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: runtime's choice)")
    p.add_argument("--streams", type=positive_int, default=None,
                   help="OpenVINO only: batches in flight, sharing the threads (default 1; 2 with --dynamic_length)")
    _add_length_args(p)
    p.set_defaults(func=cmd_infer)


def cmd_infer(args) -> int:
    from tinybert_infer.backends import make_backend
    from tinybert_infer.data.features import manifest_digest
    from tinybert_infer.run.inference import run_files, run_pure
    from tinybert_infer.models.specs import run_model_record

    if args.output_dirname is not None and args.output is None:
        raise UsageError("--output_dirname needs --output")
    if args.dynamic_length or args.tsv is not None:
        return cmd_infer_by_length(args)
    onnx_path = args.model or (Path(sim_onnx_name(args.batchsize)) if args.batchsize else None)
    if args.backend != "torch" and onnx_path is None:
        raise UsageError("give --model or --batchsize")
    backend = make_backend(args.backend, onnx_path=onnx_path, checkpoint_dir=args.model_dir or default_model_dir(),
                           batch_size=args.batchsize, threads=args.threads, precision=args.precision,
                           streams=args.streams or 1, head=args.head)
    if args.input is None:
        report = run_pure(backend, batch_size=args.batchsize, loop=args.loop, warmup_count=args.warmup_count,
                          pure_data_type=args.pure_data_type)
    else:
        if args.output is None:
            raise UsageError("give --output: results are only saved under an output root")
        from tinybert_infer.plan.planner import plan_of_backend

        dirs = [Path(d) for d in args.input.split(",") if d]
        extra = {"inputs_manifest_sha256": manifest_digest(dirs[0].parent), **run_model_record(backend, onnx_path),
                 "plan": plan_of_backend(backend, onnx_path, batch_size=args.batchsize, threads=args.threads).to_dict()}
        _check_inputs_tokenizer(dirs[0].parent, extra["model_tokenizer"])
        report = run_files(backend, dirs, args.output, batch_size=args.batchsize, outfmt=args.outfmt,
                           output_dirname=args.output_dirname, loop=args.loop, warmup_count=args.warmup_count,
                           extra_summary=extra)
    _print_run(report)
    return 0


def _check_inputs_tokenizer(bin_dir: Path, model_tokenizer) -> None:
    """Inputs tokenised with other switches than the model's are refused before anything runs."""
    from tinybert_infer.data.features import check_inputs_tokenizer, read_manifest
    from tinybert_infer.layout import MANIFEST_NAME

    if (bin_dir / MANIFEST_NAME).is_file():
        check_inputs_tokenizer(bin_dir / MANIFEST_NAME, read_manifest(bin_dir), model_tokenizer)


def _check_tsv_tokenizer(vocab: Path, model_tokenizer) -> None:
    """--tsv is tokenised with --model_dir's switches, which must be the exported graph's."""
    from tinybert_infer.data.features import check_inputs_tokenizer, read_tokenizer_settings

    made_with = {"tokenizer": read_tokenizer_settings(vocab.parent).record()}
    check_inputs_tokenizer(vocab.parent, made_with, model_tokenizer)


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
    from tinybert_infer.data.features import manifest_digest
    from tinybert_infer.run.length import format_length_block, parse_buckets, read_sample_files, read_tsv_samples
    from tinybert_infer.layout import dynamic_sim_onnx_name

    if (args.tsv is None) == (args.input is None):
        raise UsageError("give exactly one of --input (preprocessed folders) and --tsv")
    if args.output is None:
        raise UsageError("give --output: results are only saved under an output root")
    if (args.pad_multiple or args.buckets) and not args.dynamic_length:
        raise UsageError("--pad_multiple and --buckets need --dynamic_length")
    buckets = parse_buckets(args.buckets) if args.buckets else None
    model_dir = args.model_dir or default_model_dir()
    default_model = dynamic_sim_onnx_name() if args.dynamic_length else (
        sim_onnx_name(args.batchsize) if args.batchsize else None)
    onnx_path = args.model or (Path(default_model) if default_model else None)
    if args.backend != "torch" and onnx_path is None:
        raise UsageError("give --model or --batchsize")
    if args.tsv is not None:
        _check_vocab(_model_vocab(model_dir))
    if args.static_shapes and not args.dynamic_length:
        raise UsageError("--static_shapes needs --dynamic_length")
    model_record = _model_record(args.backend, model_dir, onnx_path, args.head)
    if args.tsv is not None:
        vocab = _model_vocab(model_dir)
        _check_tsv_tokenizer(vocab, model_record["model_tokenizer"])
        samples = read_tsv_samples(args.tsv, vocab, args.max_seq_length)
    else:
        dirs = [Path(d) for d in args.input.split(",") if d]
        _check_inputs_tokenizer(dirs[0].parent, model_record["model_tokenizer"])
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
        from tinybert_infer.plan.select import default_threads

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
                           calibration_tsv=_calibration_tsv(), gate=gate)
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


# ---------------------------------------------------------------- postprocess (stage 5)
def add_postprocess(sub):
    p = sub.add_parser("postprocess", help="score a result folder against the preprocessed labels")
    p.add_argument("--result_dir", type=Path, required=True, help="result/<folder> written by ais_bench or infer")
    p.add_argument("--bin_dir", type=Path, default=Path(DEFAULT_BIN_DIR), help="preprocessed inputs (manifest)")
    p.set_defaults(func=cmd_postprocess)


def cmd_postprocess(args) -> int:
    from tinybert_infer.eval.metrics import evaluate, format_report
    from tinybert_infer.run.results import metrics_path, predictions_path
    from tinybert_infer.score.output import evaluate_score_folder, is_score_folder

    if is_score_folder(args.result_dir):  # `score` output: labels and predictions are in the folder itself
        metrics = evaluate_score_folder(args.result_dir)
        if metrics is None:
            print(f"unlabelled corpus: predictions are in {args.result_dir}")
        else:
            print(format_report(metrics))
            print(f"metrics: {metrics_path(args.result_dir)}")
        return 0
    evaluation = evaluate(args.result_dir, args.bin_dir)
    if evaluation.metrics is None:
        print(f"{len(evaluation.predictions)} unlabelled samples; predictions in GLUE submission format: "
              f"{predictions_path(evaluation.result_dir)}")
    else:
        print(format_report(evaluation.metrics))
        print(f"metrics: {metrics_path(evaluation.result_dir)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tinybert_infer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_export, add_preprocess, add_infer, add_postprocess):
        add(sub)
    for add in _extra_commands():
        add(sub)
    return parser


def _extra_commands():
    """Commands that live in their own modules (accelerator tools, benchmark, corpus scoring)."""
    from tinybert_infer import bench
    from tinybert_infer.tools import aisbench, atc, trtexec
    from tinybert_infer.score import command as score

    return [m.add_command for m in (atc, trtexec, aisbench, bench, score)]


class _SigintWatch:
    """Ctrl-C still raises KeyboardInterrupt, and is remembered: a library that turns it into another
    exception on its way out (seen with numpy writing to a pathlib path) still ends as 'interrupted'."""

    seen = False
    _previous = None

    def __enter__(self):
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # leave others' handlers alone
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def _interrupt(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sigint = _SigintWatch()
    try:
        with sigint:
            return args.func(args) or 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # disk full, permissions: one line too, never a traceback
        failure = FileSystemError.from_os_error(exc)
        print(f"error: {failure}", file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except Exception:
        if not sigint.seen:
            raise
        print("error: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
