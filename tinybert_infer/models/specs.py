"""Model specifications: one record per supported checkpoint architecture (the shape Optimum's exporter uses).

A specification says how to read the weights' names, which classifier head the network ends in, the graph's
input names and the tolerance its ONNX export is validated to. The head is never guessed from the weights:
TinyBERT's and transformers' heads use the same weight names (classifier.weight / classifier.bias), so only
the checkpoint's config.json (or the user's --head) can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from tinybert_infer.errors import CheckpointError
from tinybert_infer.layout import INPUT_NAMES

HEAD_FLAG = "--head"
METADATA_HEAD = "tinybert_infer.head"            # ONNX metadata_props written at export: the head's name
METADATA_TOKENIZER = "tinybert_infer.tokenizer"  # and the checkpoint's tokenizer switches (data.describe_tokenizer)
METADATA_VOCAB = "tinybert_infer.vocab"          # and its vocabulary's digest (data.vocab_digest)
METADATA_NETWORK = "tinybert_infer.network"      # and the exported network's digest (Checkpoint.network_digest)
METADATA_LABELS = "tinybert_infer.models.labels"        # and, as JSON, Checkpoint.labels_record (outputs in dataset order)


def normalise_bert_keys(state: dict) -> dict:
    """The spellings BERT checkpoints come in: TF-style LayerNorm gamma/beta, or no 'bert.' prefix."""
    out = {}
    has_prefix = any(k.startswith("bert.") for k in state)
    for key, value in state.items():
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if not has_prefix and key.split(".", 1)[0] in ("embeddings", "encoder", "pooler"):
            key = "bert." + key
        out[key] = value
    return out


@dataclass(frozen=True)
class ModelSpec:
    name: str                           # the --head value, recorded in the ONNX metadata and the run summary
    head: str                           # the head's formula, printed at export
    architectures: tuple                # config.json "architectures" values that select this specification
    relu_head: bool                     # TinyBERT: classifier(relu(pooler)); transformers: classifier(pooler)
    reference: Optional[str] = None     # an independent forward the export is also checked against
    input_names: tuple = INPUT_NAMES
    tolerance: float = 1e-4             # max |logit difference| an exported graph may show
    normalise_keys: Callable[[dict], dict] = normalise_bert_keys

    def describe(self) -> str:
        return f"{self.name}: {self.head}"


TINYBERT = ModelSpec(
    name="tinybert", head="classifier(relu(pooler))", architectures=("TinyBertForSequenceClassification",),
    relu_head=True,
)
HF_BERT = ModelSpec(
    name="hf", head="classifier(pooler) (transformers' BertForSequenceClassification)",
    architectures=("BertForSequenceClassification",), relu_head=False,
    reference="transformers.BertForSequenceClassification",
)
SPECS = {spec.name: spec for spec in (TINYBERT, HF_BERT)}


def head_choices() -> str:
    return "|".join(SPECS)


def spec_by_name(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise CheckpointError(f"{HEAD_FLAG} {name!r}: use one of {', '.join(SPECS)}") from None


def resolve_spec(raw_config: dict, config_path: Path, override: Optional[str] = None) -> ModelSpec:
    """The override, else the config's architectures: none (the recipe's TinyBERT task checkpoints) or one
    this registry knows. Anything else is refused with the flag that decides it."""
    if override is not None:
        return spec_by_name(override)
    architectures = raw_config.get("architectures")
    if architectures in (None, []):
        return TINYBERT
    if isinstance(architectures, list) and len(architectures) == 1:
        for spec in SPECS.values():
            if architectures[0] in spec.architectures:
                return spec
    choices = ", ".join(f"{HEAD_FLAG} {s.name} for {s.head}" for s in SPECS.values())
    raise CheckpointError(f"{config_path}: architectures {architectures!r}: cannot tell which classifier head "
                          f"this checkpoint uses; give {choices}")


def read_onnx_metadata(onnx_path) -> dict:
    """A graph's metadata_props ({} when unreadable, or for an ONNX this project did not export)."""
    from tinybert_infer.onnxfile import read_metadata

    return read_metadata(onnx_path)


def same_network(graph, other) -> bool:
    """Whether two graphs were exported from the same network (both record it, and equally)."""
    mine = read_onnx_metadata(graph).get(METADATA_NETWORK)
    return mine is not None and mine == read_onnx_metadata(other).get(METADATA_NETWORK)


def checkpoint_record(checkpoint) -> dict:
    """What a run summary records about a checkpoint's network: head, tokenizer switches and vocabulary, the
    network's identity, output labels."""
    from tinybert_infer.data.features import make_tokenizer

    return {"head": checkpoint.spec.name, "model_tokenizer": checkpoint.tokenizer.label(),
            "model_vocab": make_tokenizer(checkpoint.vocab_file, checkpoint.tokenizer).vocab_digest,
            "model_network": checkpoint.network_digest, "model_labels": checkpoint.labels_record()}


def run_model_record(backend, onnx_path=None) -> dict:
    """checkpoint_record, from the checkpoint (PyTorch backend) or from the exported graph's metadata (None
    where neither says)."""
    import json

    checkpoint = getattr(backend, "checkpoint", None)
    if checkpoint is not None:
        return checkpoint_record(checkpoint)
    meta = read_onnx_metadata(onnx_path) if onnx_path is not None and Path(onnx_path).is_file() else {}
    labels = meta.get(METADATA_LABELS)
    return {"head": meta.get(METADATA_HEAD), "model_tokenizer": meta.get(METADATA_TOKENIZER),
            "model_vocab": meta.get(METADATA_VOCAB), "model_network": meta.get(METADATA_NETWORK),
            "model_labels": json.loads(labels) if labels else None}


def check_graph_tokenizer(onnx: Path, vocab: Path) -> None:
    """A graph exported from a checkpoint with other tokenizer switches or another vocabulary would be fed ids it
    was never trained on."""
    from tinybert_infer.data.features import (check_tokenizer_match, check_vocab_match, read_tokenizer_settings,
                                              vocab_file_digest)

    meta = read_onnx_metadata(onnx)
    what, fix = "exported from a checkpoint whose tokenizer uses", "give the --model_dir it was exported from"
    check_tokenizer_match(onnx, what, meta.get(METADATA_TOKENIZER), str(vocab.parent),
                          read_tokenizer_settings(vocab.parent).label(), fix)
    check_vocab_match(onnx, what, meta.get(METADATA_VOCAB), str(vocab), vocab_file_digest(vocab), fix)
