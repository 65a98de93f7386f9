"""Read and validate a BERT sequence-classifier checkpoint folder, and build the model from it.

Everything about the network comes from the folder's own files: layers, hidden size, heads and vocabulary
from config.json, the classifier head from its architectures (specs.py, or --head), the label count from the
classifier weight, the order of its outputs from id2label (labels.py: put into dataset order). Weights are
read without executing pickled code (torch.load(weights_only=True) or safetensors), whole or sharded
(*.index.json), and must be finite. The folder may be a Hugging Face cache entry (models--org--name, or one of
its snapshots/<hash> folders).
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tinybert_infer.data.features import (REQUIRED_TOKENS, TOKENIZER_JSON, TokenizerSettings, load_vocab,
                                          read_tokenizer_settings)
from tinybert_infer.errors import CheckpointError
from tinybert_infer.fsutil import read_json_object
from tinybert_infer.models.labels import labels_record, output_order, reorder_classifier
from tinybert_infer.models.config import ACTIVATION_NAMES, TinyBertConfig
from tinybert_infer.models.specs import ModelSpec, resolve_spec

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"
VOCAB_FILES = (VOCAB_FILE, TOKENIZER_JSON)  # first found wins
# first found wins; an index (*.index.json) names the shards holding each tensor
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
SPECIAL_TOKENS = REQUIRED_TOKENS  # what every checkpoint's vocabulary must have
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
    weights_file: Path       # the weights file, or the index of sharded weights
    vocab_file: Path         # vocab.txt or tokenizer.json
    state_dict: dict
    spec: ModelSpec
    tokenizer: TokenizerSettings
    raw_config: dict
    output_order: tuple      # labels.output_order: the checkpoint's output index for each dataset label

    def labels_record(self) -> list:
        """Each dataset label with the checkpoint's own output index and name (recorded in run summaries)."""
        return labels_record(self.raw_config, self.output_order)

    @functools.cached_property
    def network_digest(self) -> str:
        """The identity of the network this checkpoint exports: its weights (classifier in dataset order), config
        and head. Graphs exported from one checkpoint share it; the planner pairs the packed and static graphs
        with the dynamic one only when it matches, so a graph left from another export never runs in its place.
        Computed once (an export stamps it into four graphs)."""
        import torch

        digest = hashlib.sha256(json.dumps({"head": self.spec.name, "config": self.raw_config}, sort_keys=True,
                                           default=str).encode())
        for key in sorted(self.state_dict):
            tensor = self.state_dict[key].detach().contiguous().cpu()
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return "sha256:" + digest.hexdigest()


def resolve_folder(folder) -> Path:
    """A Hugging Face cache entry (models--org--name/ with refs/ and snapshots/) means the snapshot that
    refs/main names (or its only snapshot); any other folder is itself."""
    folder = Path(folder)
    snapshots = folder / "snapshots"
    if not snapshots.is_dir():
        return folder
    ref = folder / "refs" / "main"
    if ref.is_file():
        target = snapshots / ref.read_text(encoding="utf-8").strip()
        if not target.is_dir():
            raise CheckpointError(f"{ref}: names snapshot {target.name!r}, which {snapshots} does not have")
        return target
    found = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(found) != 1:
        raise CheckpointError(f"{folder}: Hugging Face cache entry without refs/main and with {len(found)} "
                              f"snapshots; point --model_dir at one of {snapshots}/<hash>")
    return found[0]


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: config file not found")
    raw = read_json_object(path, CheckpointError)
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
    if act not in ACTIVATION_NAMES:
        raise CheckpointError(f"{path}: hidden_act {act!r} not supported (use one of {sorted(ACTIVATION_NAMES)})")
    eps = raw.get("layer_norm_eps", 1e-12)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise CheckpointError(f"{path}: key 'layer_norm_eps' must be a positive number, got {eps!r}")
    _check_plain_bert_encoder(raw, path)
    return raw


# Config values (BertConfig's) under which the network is no longer the encoder modeling.py computes.
_REQUIRED_VALUES = {
    "model_type": ("bert",),
    "position_embedding_type": ("absolute",),
    "is_decoder": (False,),
    "add_cross_attention": (False,),
    "problem_type": (None, "single_label_classification"),
}


def _check_plain_bert_encoder(raw: dict, path: Path) -> None:
    for key, allowed in _REQUIRED_VALUES.items():
        if key in raw and raw[key] not in allowed:
            raise CheckpointError(f"{path}: {key} {raw[key]!r} not supported (supported: "
                                  f"{', '.join(repr(a) for a in allowed)})")


def find_weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder}: no weights file (model.safetensors or pytorch_model.bin); sharded "
                          f"weights need their index, model.safetensors.index.json")


def load_state_dict(path: Path) -> dict:
    """Load tensors only; a pickle that tries to run code is refused, never executed."""
    import torch  # here, not at the top: commands that only read config.json or the vocabulary never load it

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
    _check_finite(state, path)
    return state


def load_weights(path: Path) -> dict:
    """One weights file, or every shard an index (model.safetensors.index.json) names, merged."""
    if not path.name.endswith(".index.json"):
        return load_state_dict(path)
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        shards = list(dict.fromkeys(weight_map.values()))  # file order as the index first names them
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a valid weights index ({type(exc).__name__}: {exc})") from None
    state: dict = {}
    for shard in shards:
        shard_path = path.parent / str(shard)
        if Path(str(shard)).name != str(shard) or not shard_path.is_file():
            raise CheckpointError(f"{path}: shard {shard!r} not found beside the index")
        state.update(load_state_dict(shard_path))
    missing = [name for name in weight_map if name not in state]
    if missing:
        raise CheckpointError(f"{path}: tensor '{missing[0]}' is not in its shard {weight_map[missing[0]]!r}")
    return state


def _check_finite(state: dict, path: Path) -> None:
    """NaN/inf weights give NaN logits, which argmax turns into label 0 without a word: refused at load."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not _all_finite(tensor):
            raise CheckpointError(f"{path}: tensor '{name}' holds NaN or inf values; the weights are broken")


def _all_finite(tensor) -> bool:
    import torch  # loaded already: the tensor is torch's

    # numpy's isfinite: tens of ms for a 90 MB checkpoint, where torch's took seconds on a busy machine
    if tensor.dtype == torch.bfloat16:  # no numpy dtype for it
        tensor = tensor.float()
    return bool(np.isfinite(tensor.detach().numpy()).all())


def _unpickling_reason(exc: Exception) -> str:
    """The one useful phrase of torch's multi-paragraph weights_only refusal (without its ANSI codes)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n\n|$)", text, re.S)
    return " ".join(match.group(1).split())[:160] if match else "not a plain tensor file"


def find_vocab_file(folder) -> Path:
    """vocab.txt, else the vocabulary inside tokenizer.json (what transformers' save_pretrained writes)."""
    folder = Path(folder)
    for name in VOCAB_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder / VOCAB_FILE}: vocabulary file not found (nor {TOKENIZER_JSON})")


def check_vocab(path, vocab_size: Optional[int] = None) -> int:
    """vocab.txt (or tokenizer.json) must be UTF-8, hold the special tokens and fit the embedding table;
    returns its token count."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: vocabulary file not found")
    try:
        tokens = list(load_vocab(path))  # exactly as the tokenizer reads it
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


def read_checkpoint(folder, *, head: Optional[str] = None) -> Checkpoint:
    """head: a specs.SPECS name overriding what config.json's architectures say."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    folder = resolve_folder(folder)
    raw = _read_config(folder)
    spec = resolve_spec(raw, folder / CONFIG_FILE, head)
    vocab_file = find_vocab_file(folder)
    check_vocab(vocab_file, raw["vocab_size"])
    tokenizer = read_tokenizer_settings(folder)
    weights_file = find_weights_file(folder)
    state = spec.normalise_keys(load_weights(weights_file))
    num_labels = _num_labels(state, weights_file)
    order = output_order(raw, num_labels, folder / CONFIG_FILE)
    state = reorder_classifier(state, order)  # logit k = dataset label k, in every graph exported from it
    config = TinyBertConfig(
        **{k: raw[k] for k in _INT_KEYS},
        num_labels=num_labels,
        hidden_act=raw.get("hidden_act", "gelu"),
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        relu_head=spec.relu_head,
    )
    return Checkpoint(folder, config, weights_file, vocab_file, state, spec, tokenizer, raw, order)


def build_model(checkpoint: Checkpoint, *, cls_only_last_layer: bool = True):
    """The eval-mode model with every encoder and classifier weight checked against the config.

    cls_only_last_layer: see modeling.Encoder (same logits, less work); False gives the textbook graph."""
    from tinybert_infer.models.modeling import TinyBertForSequenceClassification

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


def load_model(folder, *, cls_only_last_layer: bool = True,
               head: Optional[str] = None) -> tuple:
    checkpoint = read_checkpoint(folder, head=head)
    return checkpoint, build_model(checkpoint, cls_only_last_layer=cls_only_last_layer)
