"""torch -> ONNX (TorchScript exporter) -> onnxsim, with contract checks and numerical validation."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from tinybert_infer.models.checkpoint import Checkpoint, load_model
from tinybert_infer.errors import ExportError
from tinybert_infer.layout import DEFAULT_OPSET, IDS_NAME, INPUT_NAMES, OUTPUT_NAME, SEQ_LEN, onnx_name, sim_onnx_name
from tinybert_infer.fsutil import staged_files
from tinybert_infer.models.specs import (METADATA_HEAD, METADATA_LABELS, METADATA_NETWORK, METADATA_TOKENIZER,
                                         METADATA_VOCAB, checkpoint_record)

PYTORCH = "PyTorch"  # the project's own module, computing every row (textbook_reference)
# onnxsim passes that destroy the patterns ONNX Runtime's BERT fusions look for (MatMul+Add -> Gemm,
# merged Unsqueezes on the mask path); skipping them changes no numbers and atc/TensorRT need neither.
SKIPPED_ONNXSIM_PASSES = [
    "fuse_matmul_add_bias_into_gemm_batched", "fuse_matmul_add_bias_into_gemm", "fuse_consecutive_unsqueezes",
]


@dataclass
class ExportReport:
    onnx_path: Path
    sim_path: Path
    max_abs_diff: float
    max_abs_diff_sim: float
    samples_checked: int
    validation_source: str
    head: str = ""
    # every independent forward the graphs were also checked against: name -> (plain, simplified) max diff
    reference_diffs: dict = field(default_factory=dict)
    # export --dynamic also writes the packed graphs: (plain, simplified), and name -> (plain, simplified) max diff
    packed_paths: tuple = ()
    packed_diffs: dict = field(default_factory=dict)


def export_onnx(model, path: Path, batch_size: Optional[int], *, seq_len: int = SEQ_LEN,
                opset: int = DEFAULT_OPSET, dynamic: bool = False) -> None:
    """Write the graph with inputs input_ids, segment_ids, input_mask (int64) and one float32 output.

    batch_size None or dynamic=True gives dynamic batch and sequence axes (for dynamic-shape runtimes).
    """
    example_batch = batch_size or 2
    dummy = tuple(torch.ones(example_batch, seq_len, dtype=torch.int64) for _ in INPUT_NAMES)
    axes = None
    if dynamic:
        axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
        axes[OUTPUT_NAME] = {0: "batch"}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, dummy, str(path), input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
            opset_version=opset, dynamic_axes=axes, do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter: the graph ORT fuses and atc has always taken
        )


def simplify_onnx(src: Path, dst: Path) -> None:
    import onnx
    import onnxsim

    model = onnx.load(str(src))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        simplified, ok = onnxsim.simplify(model, skipped_optimizers=list(SKIPPED_ONNXSIM_PASSES))
    if not ok:
        raise ExportError(f"{src}: onnxsim could not validate the simplified model")
    onnx.save(simplified, str(dst))


def checked_graph(path: Path):
    """onnx.checker, then (graph, its real inputs: initializers excluded) for a contract check."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ExportError(f"{path}: onnx.checker failed: {exc}") from None
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return graph, [i for i in graph.input if i.name not in initializers]


def value_dims(value) -> list:
    """A graph value's shape: fixed sizes as ints, symbolic ones as None."""
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def check_contract(path: Path, batch_size: Optional[int], num_labels: int, seq_len: int = SEQ_LEN) -> None:
    """onnx.checker plus the interface every later stage relies on."""
    import onnx

    graph, inputs = checked_graph(path)
    names = [i.name for i in inputs]
    if names != list(INPUT_NAMES):
        raise ExportError(f"{path}: inputs {names}, expected {list(INPUT_NAMES)}")
    for value in inputs:
        dims = value_dims(value)
        if value.type.tensor_type.elem_type != onnx.TensorProto.INT64:
            raise ExportError(f"{path}: input {value.name} is not int64")
        if batch_size is not None and dims != [batch_size, seq_len]:
            raise ExportError(f"{path}: input {value.name} has shape {dims}, expected [{batch_size}, {seq_len}]")
    if len(graph.output) != 1:
        raise ExportError(f"{path}: {len(graph.output)} outputs, expected 1 (the logits)")
    out = graph.output[0].type.tensor_type
    dims = value_dims(graph.output[0])
    if out.elem_type != onnx.TensorProto.FLOAT or dims[-1:] != [num_labels] or (
            batch_size is not None and dims != [batch_size, num_labels]):
        raise ExportError(f"{path}: output has shape {dims}, expected [{batch_size}, {num_labels}] float32")


def validation_inputs(checkpoint: Checkpoint, tsv_path, count: int, seq_len: int = SEQ_LEN):
    """Real sentences tokenised like preprocessing when a TSV is at hand; otherwise varied random ids."""
    if tsv_path is not None and Path(tsv_path).is_file():
        from itertools import islice

        from tinybert_infer.data.features import encode, make_tokenizer
        from tinybert_infer.data.tsv import TsvReader

        texts = [ex.text for ex in islice(TsvReader(tsv_path, label_set=None), count)]
        feats = encode(make_tokenizer(checkpoint.vocab_file, checkpoint.tokenizer), texts, seq_len)
        source = f"{len(texts)} sentences of {tsv_path}"
    else:
        from tinybert_infer.data.features import synthetic_feeds

        feats = synthetic_feeds(count, seq_len, checkpoint.config.vocab_size, lengths="uniform")
        source = f"{count} random sequences (no TSV found)"
    return feats, source


def _batched(feats: dict, batch: int):
    from tinybert_infer.run.inference import iter_batches

    for chunk in iter_batches(len(feats[IDS_NAME]), batch):
        real = [i for i in chunk if i is not None]
        rows = real + [real[0]] * (batch - len(real))  # pad like ais_bench: copies of the chunk's first row
        yield {k: v[rows] for k, v in feats.items()}, len(real)


def logit_difference(expected: np.ndarray, got: np.ndarray) -> float:
    """max |expected - got|; inf when either side has a NaN or inf (NaN - NaN must never pass as 0)."""
    if not (np.all(np.isfinite(expected)) and np.all(np.isfinite(got))):
        return math.inf
    return float(np.max(np.abs(expected - got)))


def check_parity(path: Path, value: float, tolerance: float, against: str = PYTORCH, where: str = "") -> None:
    if value == math.inf:
        raise ExportError(f"{path}: non-finite logits (NaN or inf) in the parity check vs {against}{where}")
    if not value <= tolerance:
        raise ExportError(f"{path}: max |logit difference| vs {against} {value:.3g}{where} exceeds {tolerance:g}")


def max_logit_difference(model, onnx_path: Path, feats: dict, batch: int) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.inference_mode():
        for chunk, real in _batched(feats, batch):
            expected = model(*(torch.from_numpy(chunk[n]) for n in INPUT_NAMES)).numpy()
            got = session.run(None, {n: chunk[n] for n in INPUT_NAMES})[0]
            worst = max(worst, logit_difference(expected[:real], got[:real]))
    return worst


class TransformersForward(torch.nn.Module):
    """transformers' own BertForSequenceClassification on the checkpoint's weights: an independent forward
    (its own encoder, mask and head code) for the graphs of Hugging Face checkpoints. Built from config.json
    and the tensors already read weights-only; nothing is downloaded."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig.from_dict(dict(checkpoint.raw_config))
        config.num_labels = checkpoint.config.num_labels
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = BertForSequenceClassification(config).eval()
        expected = self.model.state_dict()
        missing = [k for k in expected if k not in checkpoint.state_dict]
        if missing:
            raise ExportError(f"{checkpoint.weights_file}: transformers' BertForSequenceClassification needs "
                              f"'{missing[0]}', which the checkpoint lacks")
        self.model.load_state_dict({k: checkpoint.state_dict[k].float() for k in expected}, strict=True)

    def forward(self, input_ids, segment_ids, input_mask):
        return self.model(input_ids=input_ids, token_type_ids=segment_ids, attention_mask=input_mask).logits


def parity_references(checkpoint: Checkpoint, model) -> dict:
    """name -> module the exported graphs must match: the project's module computing every row, plus the
    specification's independent forward where it has one (transformers' for Hugging Face checkpoints)."""
    references = {PYTORCH: textbook_reference(model)}
    if checkpoint.spec.reference == "transformers.BertForSequenceClassification":
        references["transformers BertForSequenceClassification"] = TransformersForward(checkpoint).eval()
    return references


def stamp_metadata(path: Path, checkpoint: Checkpoint) -> None:
    """Record the head, the tokenizer switches and vocabulary, the network's identity and the output labels in the
    graph, so inference can record and check them."""
    import onnx

    record = checkpoint_record(checkpoint)
    model = onnx.load(str(path))
    props = {METADATA_HEAD: record["head"], METADATA_TOKENIZER: record["model_tokenizer"],
             METADATA_VOCAB: record["model_vocab"], METADATA_NETWORK: record["model_network"],
             METADATA_LABELS: json.dumps(record["model_labels"])}
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def textbook_reference(model):
    """The same weights computing every row of every layer: what an exported graph is validated against."""
    reference = copy.deepcopy(model)
    reference.bert.encoder.cls_only_last_layer = False
    return reference


def export_checkpoint(checkpoint_dir, batch_size: int, out_dir=".", *, opset: int = DEFAULT_OPSET,
                      tsv_path=None, validate_count: int = 64, seq_len: int = SEQ_LEN,
                      tolerance: Optional[float] = None, cls_only_last_layer: bool = True,
                      head: Optional[str] = None) -> ExportReport:
    """Stage 1: TinyBERT_bsN.onnx and TinyBERT_sim_bsN.onnx, both checked and validated before either lands.

    cls_only_last_layer (default): the last layer computes only the [CLS] row the classifier reads
    (modeling.Encoder); either way the graphs are validated against the full textbook computation, and for
    Hugging Face checkpoints against transformers' own forward too. head: see checkpoint.read_checkpoint;
    tolerance: default the specification's."""
    if batch_size < 1:
        raise ExportError(f"batch size must be a positive integer, got {batch_size}")
    checkpoint, model = load_model(checkpoint_dir, cls_only_last_layer=cls_only_last_layer, head=head)
    tolerance = checkpoint.spec.tolerance if tolerance is None else tolerance
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final_plain, final_sim = out_dir / onnx_name(batch_size), out_dir / sim_onnx_name(batch_size)
    feats, source = validation_inputs(checkpoint, tsv_path, max(validate_count, batch_size), seq_len)
    with staged_files(final_plain, final_sim) as (plain, sim):
        export_onnx(model, plain, batch_size, seq_len=seq_len, opset=opset)
        check_contract(plain, batch_size, checkpoint.config.num_labels, seq_len)
        simplify_onnx(plain, sim)
        check_contract(sim, batch_size, checkpoint.config.num_labels, seq_len)
        diffs = {}
        for name, reference in parity_references(checkpoint, model).items():
            diffs[name] = tuple(max_logit_difference(reference, staged, feats, batch_size) for staged in (plain, sim))
            for path, value in zip((final_plain, final_sim), diffs[name]):
                check_parity(path, value, tolerance, name)
        for staged in (plain, sim):
            stamp_metadata(staged, checkpoint)
        # Both files are moved into place together when this block exits without error.
    diff, diff_sim = diffs.pop(PYTORCH)
    return ExportReport(final_plain, final_sim, diff, diff_sim, len(feats[IDS_NAME]), source,
                        checkpoint.spec.describe(), diffs)


# ---------------------------------------------------------------- dynamic-shape export (length-aware batching)
DYNAMIC_CHECK_LENGTHS = (5, 17, 33, SEQ_LEN)
DYNAMIC_CHECK_BATCHES = (1, 3, 8)
DYNAMIC_VALIDATE_COUNT = 16  # sentences x 4 lengths x 3 batch sizes x 2 graphs: seconds, not minutes


def check_dynamic_axes(path: Path) -> None:
    """Every input must keep a symbolic batch and sequence axis (onnxsim or the exporter could pin them)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in INPUT_NAMES and any(d.HasField("dim_value") for d in dims[:2]):
            shown = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
            raise ExportError(f"{path}: input {value.name} has fixed shape {shown}, expected dynamic batch and sequence")


def max_logit_difference_dynamic(model, onnx_path: Path, feats: dict, lengths=DYNAMIC_CHECK_LENGTHS,
                                 batches=DYNAMIC_CHECK_BATCHES) -> dict:
    """Worst |logit diff| vs PyTorch per (sequence length, batch) pair, all through one ORT session."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    width = feats[IDS_NAME].shape[1]
    worst = {}
    for length in sorted({min(n, width) for n in lengths}):
        cropped = {k: np.ascontiguousarray(v[:, :length]) for k, v in feats.items()}
        with torch.inference_mode():
            expected = model(*(torch.from_numpy(cropped[n]) for n in INPUT_NAMES)).numpy()
        for batch in batches:
            got = [session.run(None, {n: chunk[n] for n in INPUT_NAMES})[0][:real]
                   for chunk, real in _batched(cropped, batch)]
            worst[(length, batch)] = logit_difference(expected, np.concatenate(got))
    return worst


def export_dynamic_checkpoint(checkpoint_dir, out_dir=".", *, opset: int = DEFAULT_OPSET, tsv_path=None,
                              validate_count: int = DYNAMIC_VALIDATE_COUNT, seq_len: int = SEQ_LEN,
                              tolerance: Optional[float] = None, cls_only_last_layer: bool = True,
                              head: Optional[str] = None) -> ExportReport:
    """TinyBERT_dyn.onnx and TinyBERT_sim_dyn.onnx (dynamic batch and sequence), validated at several
    lengths and batch sizes before either lands; then the packed pair (export/packed.py), validated on the same
    sentences. The static export stays what atc and trtexec get."""
    from tinybert_infer.layout import dynamic_onnx_name, dynamic_sim_onnx_name

    checkpoint, model = load_model(checkpoint_dir, cls_only_last_layer=cls_only_last_layer, head=head)
    tolerance = checkpoint.spec.tolerance if tolerance is None else tolerance
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final_plain, final_sim = out_dir / dynamic_onnx_name(), out_dir / dynamic_sim_onnx_name()
    feats, source = validation_inputs(checkpoint, tsv_path, validate_count, seq_len)
    references = parity_references(checkpoint, model)
    worst = {name: {} for name in references}  # name -> final path -> max diff
    with staged_files(final_plain, final_sim) as (plain, sim):
        export_onnx(model, plain, None, seq_len=seq_len, opset=opset, dynamic=True)
        simplify_onnx(plain, sim)
        for staged, final in ((plain, final_plain), (sim, final_sim)):
            check_contract(staged, None, checkpoint.config.num_labels, seq_len)
            check_dynamic_axes(staged)
            for name, reference in references.items():
                diffs = max_logit_difference_dynamic(reference, staged, feats)
                (length, batch), value = max(diffs.items(), key=lambda item: item[1])
                check_parity(final, value, tolerance, name, f" at length {length}, batch {batch}")
                worst[name][final] = value
            stamp_metadata(staged, checkpoint)
    checked = sorted({min(n, seq_len) for n in DYNAMIC_CHECK_LENGTHS})
    source += f", cropped to lengths {', '.join(map(str, checked))} at batch sizes " \
              f"{', '.join(map(str, DYNAMIC_CHECK_BATCHES))}"
    from tinybert_infer.export.packed import export_packed_checkpoint

    packed_plain, packed_sim, packed_diffs = export_packed_checkpoint(
        checkpoint, model, references, feats, out_dir, opset=opset, width=seq_len, tolerance=tolerance)
    own = worst.pop(PYTORCH)
    return ExportReport(final_plain, final_sim, own[final_plain], own[final_sim], len(feats[IDS_NAME]), source,
                        checkpoint.spec.describe(), {n: (d[final_plain], d[final_sim]) for n, d in worst.items()},
                        (packed_plain, packed_sim), packed_diffs)
