"""Model specifications: one record per supported checkpoint architecture (the shape Optimum's exporter uses).

A specification says how to read the weights' names, which classifier head the network ends in, the graph's
input names and the tolerance its ONNX export is validated to. The head is never guessed from the weights:
TinyBERT's and transformers' heads use the same weight names (classifier.weight / classifier.bias), so only
the checkpoint's config.json (or the user's --head) can tell them apart.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from tinybert_infer.errors import CheckpointError
from tinybert_infer.layout import INPUT_NAMES

HEAD_FLAG = "--head"
METADATA_HEAD = "tinybert_infer.head"            # ONNX metadata_props written at export: the head's name
METADATA_TOKENIZER = "tinybert_infer.tokenizer"  # and the checkpoint's tokenizer switches (data.describe_tokenizer)
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
    """A graph's metadata_props ({} when unreadable, or for an ONNX this project did not export).

    Parsed with protobuf against just that field of onnx.proto (ModelProto.metadata_props = 14, a repeated
    StringStringEntryProto {key = 1, value = 2}): `import onnx` costs ~0.9 s (its ml_dtypes extension), which
    every score/infer run paid only to read these strings. Only those records are read: the others (the graph,
    ~90 MB of weights, comes before them) are seeked over, so this reads a few KB instead of the whole file
    (0.14 s of a cached `score` run, twice)."""
    from google.protobuf.message import DecodeError

    try:
        with open(onnx_path, "rb") as handle:
            records = _top_level_records(handle, os.fstat(handle.fileno()).st_size, _METADATA_FIELD)
        model = _metadata_only_model_class()()
        model.ParseFromString(records)
    except (OSError, DecodeError, ValueError):  # unreadable: loading it into a runtime reports that, as one line
        return {}
    return {p.key: p.value for p in model.metadata_props}


_METADATA_FIELD = 14  # ModelProto.metadata_props
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _read_varint(handle) -> tuple[int, bytes]:
    """(value, its bytes) of the protobuf varint at the handle's position; ValueError at EOF or past 10 bytes."""
    raw = bytearray()
    value = 0
    while True:
        byte = handle.read(1)
        if not byte or len(raw) == 10:
            raise ValueError("truncated or invalid varint")
        raw += byte
        value |= (byte[0] & 0x7F) << (7 * (len(raw) - 1))
        if not byte[0] & 0x80:
            return value, bytes(raw)


def _top_level_records(handle, size: int, wanted: int) -> bytes:
    """Every top-level record of field `wanted` (tag, length and payload, in file order) of the protobuf message
    that the file holds, seeking over the other fields; ValueError when the file is not such a message."""
    out = bytearray()
    while handle.tell() < size:
        tag, tag_bytes = _read_varint(handle)
        field, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            _read_varint(handle)
            continue
        if wire in (_FIXED64, _FIXED32):
            length, length_bytes = (8 if wire == _FIXED64 else 4), b""
        elif wire == _LENGTH_DELIMITED:
            length, length_bytes = _read_varint(handle)
        else:  # groups (unused by onnx.proto) or not protobuf at all
            raise ValueError(f"wire type {wire}")
        if handle.tell() + length > size:
            raise ValueError("record past the end of the file")
        if field == wanted and wire == _LENGTH_DELIMITED:
            out += tag_bytes + length_bytes + handle.read(length)
        else:
            handle.seek(length, os.SEEK_CUR)
    return bytes(out)


@functools.lru_cache(maxsize=None)
def _metadata_only_model_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="tinybert_onnx_metadata.proto", package="tinybert_onnx_metadata")
    entry = proto.message_type.add(name="StringStringEntryProto")
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    model = proto.message_type.add(name="ModelProto")
    model.field.add(name="metadata_props", number=14, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                    type_name=".tinybert_onnx_metadata.StringStringEntryProto")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tinybert_onnx_metadata.ModelProto"))


def checkpoint_record(checkpoint) -> dict:
    """What a run summary records about a checkpoint's network: head, tokenizer switches, output labels."""
    return {"head": checkpoint.spec.name, "model_tokenizer": checkpoint.tokenizer.label(),
            "model_labels": checkpoint.labels_record()}


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
            "model_labels": json.loads(labels) if labels else None}
