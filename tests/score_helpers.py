"""Shared by the score tests: a tiny checkpoint's dynamic ONNX, corpora in shards, reading predictions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import SENTENCES, write_tsv


@pytest.fixture(scope="session")
def tiny_dyn_onnx(tiny_exports, tmp_path_factory) -> Path:
    """TinyBERT_sim_dyn.onnx of the tiny checkpoint, a copy of the session's export in a folder of its own."""
    out = tmp_path_factory.mktemp("dyn") / tiny_exports["dynamic"].sim_path.name
    shutil.copy(tiny_exports["dynamic"].sim_path, out)
    return out


def write_shards(folder: Path, sizes, rows=SENTENCES, header="sentence\tlabel") -> list:
    """Shards part-0.tsv.. of the given row counts, cycling through rows at different offsets."""
    paths = []
    for n, size in enumerate(sizes):
        picked = [rows[(n + i) % len(rows)] for i in range(size)]
        paths.append(write_tsv(folder / f"part-{n}.tsv", picked, header=header))
    return paths


def read_predictions(path: Path) -> tuple[list, np.ndarray]:
    """(header, rows as a list of string lists) of a predictions.tsv."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def reference_logits(checkpoint: Path, texts) -> np.ndarray:
    """PyTorch on the checkpoint, full-width batches of 8: an oracle independent of score's code path."""
    import torch

    from tinybert_infer.models.checkpoint import load_model
    from tinybert_infer.data.features import encode, make_tokenizer

    ckpt, model = load_model(checkpoint)
    feats = encode(make_tokenizer(ckpt.vocab_file), list(texts))
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 8):
            out.append(model(*(torch.from_numpy(feats[n][start:start + 8])
                               for n in ("input_ids", "segment_ids", "input_mask"))).numpy())
    return np.concatenate(out)
