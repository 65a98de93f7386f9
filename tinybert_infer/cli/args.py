"""Arguments and parsers shared by the commands."""

from __future__ import annotations

import argparse
from pathlib import Path


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


def head_arg(p, what: str):
    from tinybert_infer.models.specs import SPECS

    p.add_argument("--head", choices=list(SPECS), default=None,
                   help=f"classifier head {what}: tinybert = classifier(relu(pooler)), hf = transformers' "
                        "BertForSequenceClassification, classifier(pooler) (default: from config.json's "
                        "architectures; none means tinybert)")


def model_vocab(model_dir: Path) -> Path:
    """The checkpoint's vocabulary: vocab.txt or tokenizer.json (also inside a Hugging Face cache entry)."""
    from tinybert_infer.models.checkpoint import VOCAB_FILE, find_vocab_file, resolve_folder
    from tinybert_infer.errors import CheckpointError

    try:
        return find_vocab_file(resolve_folder(model_dir))
    except CheckpointError:
        return model_dir / VOCAB_FILE  # check_vocab reports it as before: vocabulary file not found


def data_dir_arg(p):
    p.add_argument("--data_dir", type=Path, default=None,
                   help="GLUE SST-2 folder (default: $TINYBERT_DATA_DIR or ./glue_dir/SST-2)")


def check_vocab(vocab: Path) -> None:
    """The vocabulary is there and readable (checked before anything runs; imports torch only then)."""
    from tinybert_infer.models.checkpoint import check_vocab as check

    check(vocab)
