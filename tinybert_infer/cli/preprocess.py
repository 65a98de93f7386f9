"""`preprocess` (stage 3): a GLUE TSV -> bert_bin/ per-sample input files and their manifest."""

from __future__ import annotations

from pathlib import Path

from tinybert_infer.layout import (DEFAULT_BIN_DIR, FILE_DTYPES, INPUT_NAMES, SEQ_LEN, default_data_dir,
                                   default_model_dir)
from tinybert_infer.cli.args import add_model_dir_arg, check_vocab, data_dir_arg, model_vocab, positive_int


def add_command(sub):
    p = sub.add_parser("preprocess", help="GLUE TSV -> bert_bin/{input_ids,segment_ids,input_mask}/input<i>.bin")
    data_dir_arg(p)
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
    vocab = args.vocab or model_vocab(args.model_dir or default_model_dir())
    check_vocab(vocab)
    report = preprocess(tsv, vocab, args.output_dir, max_seq_length=args.max_seq_length, dtype=args.dtype)
    kind = "labelled" if report.labelled else "unlabelled"
    print(f"{tsv}: {report.count} {kind} sentences -> {report.out_dir}/"
          f"{{{','.join(INPUT_NAMES)}}}/input0.bin..input{report.count - 1}.bin ({args.dtype})")
    return 0
