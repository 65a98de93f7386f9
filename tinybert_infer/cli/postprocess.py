"""`postprocess` (stage 5): a result folder -> accuracy and per-class metrics."""

from __future__ import annotations

from pathlib import Path

from tinybert_infer.layout import DEFAULT_BIN_DIR


def add_command(sub):
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
