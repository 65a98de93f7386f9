"""How a corpus is scored: a plan (a plain dict, chosen once by the driver and shipped to every worker) and
the scorer built from it, with one method, score_batch(texts) -> logits.

make_score_plan decides, make_scorer executes. Without --precision: an exact fp32 runtime named by --backend on
the dynamic-shape ONNX (ONNX Runtime by default: PyTorch's labels), length-aware batches inside each chunk.
With --precision fp32|bf16|int8|auto: the run planner (plan.make_plan) chooses the artefact, batching, shape
policy and streams on this corpus's own sentences, low precision gated on the labelled dev set; the chosen
plan.Plan travels in the dict. Either way the batches run through plan.PlanExecutor (one batching rule), with
intra-op threads = the CPUs the worker was given.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tinybert_infer.data.features import encode, make_tokenizer
from tinybert_infer.errors import UsageError
from tinybert_infer.layout import DYNAMIC_EXPORT_HINT, SEQ_LEN, dynamic_sim_onnx_name, require_model
from tinybert_infer.machine import default_threads
from tinybert_infer.plan.planner import PRECISIONS

SCORE_BACKENDS = ("onnxruntime", "openvino", "torch")  # exact fp32 runtimes (OpenVINO with f32 pinned)
DEFAULT_BATCH = 32


SCORE_PRECISIONS = (*PRECISIONS, "auto")


def make_score_plan(*, backend: Optional[str] = None, precision: Optional[str] = None, model: Optional[Path] = None,
                    model_dir: Path, data_dir: Optional[Path] = None, batch_size: int = DEFAULT_BATCH,
                    threads: Optional[int] = None, max_seq_length: int = SEQ_LEN, chunk_rows: int,
                    timing_texts: Sequence[str] = (), job_size: Optional[int] = None) -> dict:
    """Everything a worker needs to build the same scorer; absolute paths (workers may run elsewhere)."""
    if backend is not None and precision is not None:
        raise UsageError("give --backend (one exact fp32 runtime) or --precision (the planner's choice), not both")
    backend = backend or ("plan" if precision else "onnxruntime")
    if backend != "plan" and backend not in SCORE_BACKENDS:
        raise UsageError(f"--backend {backend!r}: score runs one of {', '.join(SCORE_BACKENDS)} (exact fp32)")
    if precision is not None and precision not in SCORE_PRECISIONS:
        raise UsageError(f"--precision {precision!r}: use one of {', '.join(SCORE_PRECISIONS)}")
    if max_seq_length < 2:
        raise UsageError(f"--max_seq_length must be at least 2, got {max_seq_length}")
    # here, not at the top: torch only when a run needs it
    from tinybert_infer.models.checkpoint import check_vocab, find_vocab_file
    from tinybert_infer.models.specs import check_graph_tokenizer

    model_dir = Path(model_dir).resolve()
    vocab = find_vocab_file(model_dir)  # vocab.txt or tokenizer.json; tokenizer_config.json beside it is honoured
    check_vocab(vocab)
    onnx = None
    if backend != "torch":
        onnx = require_model(Path(model or dynamic_sim_onnx_name()).resolve(), DYNAMIC_EXPORT_HINT)
        check_graph_tokenizer(onnx, vocab)
    threads = int(threads or default_threads())
    plan = {
        "backend": backend, "precision": precision or "fp32", "model": str(onnx) if onnx else None,
        "model_dir": str(model_dir), "vocab": str(vocab), "batch_size": int(batch_size),
        "threads": threads, "max_seq_length": int(max_seq_length), "chunk_rows": int(chunk_rows),
    }
    if precision is not None:
        choice = choose_run_plan(precision, onnx, model_dir=model_dir, data_dir=data_dir, vocab=vocab,
                                 batch_size=batch_size, threads=threads, max_seq_length=max_seq_length,
                                 timing_texts=timing_texts, job_size=job_size)
        plan.update(run_plan=choice.plan.to_dict(), plan_selection=choice.selection,
                    precision=choice.plan.precision)
    return plan


def choose_run_plan(precision: str, onnx: Path, *, model_dir: Path, data_dir: Optional[Path], vocab: Path,
                    batch_size: int, threads: int, max_seq_length: int, timing_texts: Sequence[str],
                    job_size: Optional[int] = None):
    """The planner's choice for this corpus: timed on its first sentences (real lengths), low precision kept
    only within the gate on the labelled dev set; int8 calibrated on test.tsv, never on the scored data."""
    from tinybert_infer.layout import default_data_dir
    from tinybert_infer.plan.planner import AUTO_MAX_DROP, DEFAULT_MAX_DROP, candidates_for, dev_gate, make_plan

    data_dir = Path(data_dir or default_data_dir())
    gate = None
    if precision != "fp32":
        gate = dev_gate(data_dir / "dev.tsv", vocab, AUTO_MAX_DROP if precision == "auto" else DEFAULT_MAX_DROP,
                        max_seq_length)
        if gate is None:
            raise UsageError(f"{data_dir / 'dev.tsv'}: not found; --precision {precision} is chosen within an accuracy "
                             f"gate on the labelled SST-2 dev set (give --data_dir, or --precision fp32)")
    tokenizer = make_tokenizer(vocab)
    data = encode(tokenizer, list(timing_texts), max_seq_length) if len(timing_texts) else None
    candidates = candidates_for(precision, dynamic_model=onnx, batch_size=batch_size, threads=threads)
    return make_plan(dynamic_model=onnx, precision=precision, batch_size=batch_size, threads=threads, data=data,
                     checkpoint_dir=model_dir, calibration_tsv=data_dir / "test.tsv", candidates=candidates,
                     gate=gate, job_size=job_size)


class Scorer:
    """Tokenises a chunk of sentences and runs it in batches; logits float32 [len(texts), labels]."""

    def __init__(self, plan: dict):
        from tinybert_infer.plan.planner import Plan, PlanExecutor, open_plan, plan_of_backend

        self.plan = dict(plan)
        self.tokenizer = make_tokenizer(plan["vocab"])
        if plan.get("run_plan"):
            self.executor = open_plan(Plan.from_dict(plan["run_plan"]))
        else:
            from tinybert_infer.backends import make_backend

            backend = make_backend(plan["backend"], onnx_path=plan["model"], checkpoint_dir=plan["model_dir"],
                                   threads=plan["threads"])
            # A static-shape artefact (or torch with a fixed batch) is fed full-width batches instead.
            batching = "length" if backend.seq_len is None else "static"
            self.executor = PlanExecutor(plan_of_backend(backend, plan["model"], batching=batching,
                                                         batch_size=backend.batch_size or plan["batch_size"],
                                                         threads=plan["threads"]), backend)
        self.backend = self.executor.backend
        self.plan["batching"] = {"length": "length-aware", "packed": "packed"}.get(self.executor.plan.batching,
                                                                                   "static")

    def score_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.infer(self.encode(texts))

    def encode(self, texts: Sequence[str]) -> dict:
        """Tokenise (data.features.WordPieceTokenizer); infer() runs the features (the runtime releases the GIL)."""
        return encode(self.tokenizer, list(texts), self.backend.seq_len or self.plan["max_seq_length"])

    def infer(self, feats: dict) -> np.ndarray:
        return self.executor.score(feats)

    def num_labels(self) -> int:
        """Read from the model itself (one short sentence through it), whatever the runtime."""
        return int(self.score_batch(["a"]).shape[1])

    def describe(self) -> dict:
        from tinybert_infer.models.specs import run_model_record

        info = {k: v for k, v in self.plan.items()}
        info.setdefault("run_plan", self.executor.plan.to_dict())
        info["runtime"] = self.backend.describe()
        info.update(run_model_record(self.backend, self.plan["model"]))  # head, tokenizer, output labels
        info["python"] = platform.python_version()
        return info

    def close(self) -> None:
        self.executor.close()


def make_scorer(plan: dict) -> Scorer:
    return Scorer(plan)
