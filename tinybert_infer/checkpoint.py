"""Read and validate a TinyBERT checkpoint folder, and build the model from it.

Everything about the network's size comes from the folder's own files: layers, hidden size, heads and
vocabulary from config.json, the label count from the classifier weight. Weights are read without
executing pickled code (torch.load(weights_only=True) or safetensors).
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .errors import CheckpointError
from .modeling import TinyBertConfig, TinyBertForSequenceClassification, _ACTIVATIONS

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # first found wins
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
_INT_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    config: TinyBertConfig
    weights_file: Path
    vocab_file: Path
    state_dict: dict


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: config file not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    for key in _INT_KEYS:
        if key not in raw:
            raise CheckpointError(f"{path}: missing key '{key}'")
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise CheckpointError(f"{path}: key '{key}' must be a positive integer, got {value!r}")
    if raw["hidden_size"] % raw["num_attention_heads"]:
        raise CheckpointError(
            f"{path}: hidden_size {raw['hidden_size']} is not a multiple of "
            f"num_attention_heads {raw['num_attention_heads']}"
        )
    act = raw.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise CheckpointError(f"{path}: hidden_act {act!r} not supported (use one of {sorted(_ACTIVATIONS)})")
    eps = raw.get("layer_norm_eps", 1e-12)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise CheckpointError(f"{path}: key 'layer_norm_eps' must be a positive number, got {eps!r}")
    return raw


def find_weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder}: no weights file ({' or '.join(WEIGHT_FILES)})")


def load_state_dict(path: Path) -> dict:
    """Load tensors only; a pickle that tries to run code is refused, never executed."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            with warnings.catch_warnings():  # torch warns about pickle protocols before refusing; one line is enough
                warnings.simplefilter("ignore")
                state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: not a plain tensor checkpoint ({_unpickling_reason(exc)}); pickled "
            f"objects are never unpickled: re-save it as a plain state_dict or as model.safetensors"
        ) from None
    except Exception as exc:  # corrupt zip, truncated file, bad safetensors header, ...
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {str(exc)[:160]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    return _normalise_keys(state)


def _unpickling_reason(exc: Exception) -> str:
    """The one useful phrase of torch's multi-paragraph weights_only refusal (without its ANSI codes)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n\n|$)", text, re.S)
    return " ".join(match.group(1).split())[:160] if match else "not a plain tensor file"


def _normalise_keys(state: dict) -> dict:
    """Accept the spellings TinyBERT checkpoints come in: TF-style gamma/beta, or no 'bert.' prefix."""
    out = {}
    has_prefix = any(k.startswith("bert.") for k in state)
    for key, value in state.items():
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if not has_prefix and key.split(".", 1)[0] in ("embeddings", "encoder", "pooler"):
            key = "bert." + key
        out[key] = value
    return out


def check_vocab(path, vocab_size: Optional[int] = None) -> int:
    """vocab.txt must be UTF-8, hold the special tokens and fit the embedding table; returns its token count."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: vocabulary file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            tokens = [line.rstrip("\n") for line in handle]  # exactly as the tokenizer reads it (data.load_vocab)
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    present = set(tokens)
    missing = [t for t in SPECIAL_TOKENS if t not in present]
    if missing:
        raise CheckpointError(f"{path}: vocabulary lacks special token(s) {', '.join(missing)} (one token per line)")
    if vocab_size is not None and len(tokens) > vocab_size:
        raise CheckpointError(
            f"{path}: {len(tokens)} tokens but config vocab_size is {vocab_size}; ids would overflow the embedding"
        )
    return len(tokens)


def _num_labels(state: dict, weights_file: Path) -> int:
    weight = state.get("classifier.weight")
    if weight is None or "classifier.bias" not in state:
        raise CheckpointError(f"{weights_file}: missing classifier weights (classifier.weight / classifier.bias)")
    if weight.dim() != 2 or weight.shape[0] < 1:
        raise CheckpointError(f"{weights_file}: classifier.weight has shape {tuple(weight.shape)}, expected [labels, hidden]")
    return int(weight.shape[0])


def read_checkpoint(folder) -> Checkpoint:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    raw = _read_config(folder)
    vocab_file = folder / VOCAB_FILE
    check_vocab(vocab_file, raw["vocab_size"])
    weights_file = find_weights_file(folder)
    state = load_state_dict(weights_file)
    config = TinyBertConfig(
        **{k: raw[k] for k in _INT_KEYS},
        num_labels=_num_labels(state, weights_file),
        hidden_act=raw.get("hidden_act", "gelu"),
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
    )
    return Checkpoint(folder, config, weights_file, vocab_file, state)


def build_model(checkpoint: Checkpoint, *, cls_only_last_layer: bool = True) -> TinyBertForSequenceClassification:
    """The eval-mode model with every encoder and classifier weight checked against the config.

    cls_only_last_layer: see modeling.Encoder (same logits, less work); False gives the textbook graph."""
    model = TinyBertForSequenceClassification(checkpoint.config, cls_only_last_layer)
    expected = model.state_dict()
    state = checkpoint.state_dict
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{checkpoint.weights_file}: missing weight '{missing[0]}'{more}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{checkpoint.weights_file}: weight '{key}' has shape {tuple(state[key].shape)}, "
                f"config implies {tuple(tensor.shape)}"
            )
    # Extra keys (fit_dense.*, position_ids buffers, ...) belong to distillation; they are ignored.
    model.load_state_dict({k: state[k].float() for k in expected}, strict=True)
    return model.eval()


def load_model(folder, *, cls_only_last_layer: bool = True) -> tuple[Checkpoint, TinyBertForSequenceClassification]:
    checkpoint = read_checkpoint(folder)
    return checkpoint, build_model(checkpoint, cls_only_last_layer=cls_only_last_layer)
