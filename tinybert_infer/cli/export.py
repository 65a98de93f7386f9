"""`export` (stage 1): checkpoint -> TinyBERT_bsBS.onnx -> TinyBERT_sim_bsBS.onnx (or the dynamic-shape graph)."""

from __future__ import annotations

from pathlib import Path

from tinybert_infer.errors import UsageError
from tinybert_infer.layout import DEFAULT_OPSET, default_data_dir, default_model_dir
from tinybert_infer.cli.args import add_model_dir_arg, data_dir_arg, head_arg, positive_int


def add_command(sub):
    p = sub.add_parser("export", help="checkpoint -> TinyBERT_bsBS.onnx and TinyBERT_sim_bsBS.onnx")
    p.add_argument("--batch_size", "-b", type=positive_int, default=None, help="static batch (required unless --dynamic)")
    p.add_argument("--dynamic", action="store_true",
                   help="write TinyBERT_dyn.onnx and TinyBERT_sim_dyn.onnx (dynamic batch and sequence axes), and "
                        "TinyBERT_packed.onnx and TinyBERT_sim_packed.onnx (several sentences per row)")
    add_model_dir_arg(p)
    data_dir_arg(p)
    p.add_argument("--output_dir", type=Path, default=Path("."))
    p.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help="ONNX opset (default 11: every atc takes it)")
    p.add_argument("--validate_count", type=positive_int, default=None,
                   help="dev sentences checked against PyTorch (default 64; 16 with --dynamic, at 12 shapes each)")
    p.add_argument("--full_last_layer", action="store_true",
                   help="compute every token in the last layer too (default: only the [CLS] row the classifier "
                        "reads, same logits, about 1/layers fewer FLOPs)")
    head_arg(p, "to export")
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
    for path, index in zip(report.packed_paths, (0, 1)):
        for name, pair in report.packed_diffs.items():
            print(f"{path}: max |logit diff| vs {name} (packed rows) = {pair[index]:.3e}")
    return 0
