"""How a corpus is scored: a plan (a plain dict, chosen once by the driver and shipped to every worker) and
the scorer built from it, with one method, score_batch(texts) -> logits.

This is the one seam the run planner (issue 10) replaces: make_plan decides, make_scorer executes.
Today's plan: an exact fp32 runtime on the dynamic-shape ONNX (ONNX Runtime by default: PyTorch's labels),
length-aware batches inside each chunk (sorted by length, each batch cropped to its longest member; exact,
see dynamic.py), intra-op threads = the CPUs the worker was given.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data import encode, make_tokenizer
from ..dynamic import plan_batches, real_lengths
from ..errors import ExportError, UsageError
from ..layout import INPUT_NAMES, SEQ_LEN, dynamic_sim_onnx_name

SCORE_BACKENDS = ("onnxruntime", "openvino", "torch")  # exact fp32 runtimes (OpenVINO with f32 pinned)
DEFAULT_BATCH = 32


def default_threads() -> int:
    from ..select import default_threads as physical_cores

    return physical_cores()


def make_plan(*, backend: str = "onnxruntime", model: Optional[Path] = None, model_dir: Path,
              batch_size: int = DEFAULT_BATCH, threads: Optional[int] = None,
              max_seq_length: int = SEQ_LEN, chunk_rows: int) -> dict:
    """Everything a worker needs to build the same scorer; absolute paths (workers may run elsewhere)."""
    if backend not in SCORE_BACKENDS:
        raise UsageError(f"--backend {backend!r}: score runs one of {', '.join(SCORE_BACKENDS)} (exact fp32)")
    if max_seq_length < 2:
        raise UsageError(f"--max_seq_length must be at least 2, got {max_seq_length}")
    from ..checkpoint import VOCAB_FILE, check_vocab  # here, not at the top: torch only when a run needs it

    model_dir = Path(model_dir).resolve()
    vocab = model_dir / VOCAB_FILE
    check_vocab(vocab)
    onnx = None
    if backend != "torch":
        onnx = Path(model or dynamic_sim_onnx_name()).resolve()
        if not onnx.is_file():
            raise ExportError(f"{onnx}: ONNX model not found (python -m tinybert_infer export --dynamic writes "
                              f"{dynamic_sim_onnx_name()})")
    return {
        "backend": backend, "precision": "fp32", "model": str(onnx) if onnx else None,
        "model_dir": str(model_dir), "vocab": str(vocab), "batch_size": int(batch_size),
        "threads": int(threads or default_threads()), "max_seq_length": int(max_seq_length),
        "chunk_rows": int(chunk_rows),
    }


class Scorer:
    """Tokenises a chunk of sentences and runs it in batches; logits float32 [len(texts), labels]."""

    def __init__(self, plan: dict):
        from ..backends import make_backend

        self.plan = dict(plan)
        self.tokenizer = make_tokenizer(plan["vocab"])
        self.backend = make_backend(plan["backend"], onnx_path=plan["model"], checkpoint_dir=plan["model_dir"],
                                    threads=plan["threads"])
        # A static-shape artefact (or torch with a fixed batch) is fed full-width batches instead.
        self.length_aware = self.backend.seq_len is None
        self.fed_batch = self.backend.batch_size
        self.plan["batching"] = "length-aware" if self.length_aware else "static"

    def score_batch(self, texts: Sequence[str]) -> np.ndarray:
        width = self.backend.seq_len or self.plan["max_seq_length"]
        feats = encode(self.tokenizer, list(texts), width)
        batches = plan_batches(real_lengths(feats[INPUT_NAMES[2]]), self.plan["batch_size"], width=width,
                               mode="dynamic_length" if self.length_aware else "static")
        out = None
        for batch in batches:
            rows = list(batch.indices)
            fed = rows + [rows[0]] * ((self.fed_batch or len(rows)) - len(rows))  # static batch: filler copies
            logits = self.backend.run({n: np.ascontiguousarray(feats[n][fed, :batch.length])
                                       for n in self.backend.input_names})[:len(rows)]
            if out is None:
                out = np.empty((len(texts), logits.shape[1]), dtype=np.float32)
            out[rows] = logits
        return out

    def num_labels(self) -> int:
        """Read from the model itself (one short sentence through it), whatever the runtime."""
        return int(self.score_batch(["a"]).shape[1])

    def describe(self) -> dict:
        info = {k: v for k, v in self.plan.items()}
        info["runtime"] = self.backend.describe()
        info["python"] = platform.python_version()
        return info

    def close(self) -> None:
        self.backend.close()


def make_scorer(plan: dict) -> Scorer:
    return Scorer(plan)
