"""Random-weight TinyBERT checkpoints in the real on-disk format (for tests and speed benchmarks)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from tinybert_infer.models.checkpoint import SPECIAL_TOKENS
from tinybert_infer.models.config import TinyBertConfig
from tinybert_infer.models.modeling import TinyBertForSequenceClassification

# The published TinyBERT-4L-312D General/SST-2 shape (the model of ModelZoo's results table).
TINYBERT_4L_312D = dict(
    vocab_size=30522, hidden_size=312, num_hidden_layers=4, num_attention_heads=12,
    intermediate_size=1200, max_position_embeddings=512, type_vocab_size=2,
)


def synthetic_vocab(size: int, words=()) -> list[str]:
    """Specials, the given words, single characters and their ## forms, then filler up to size."""
    tokens = list(SPECIAL_TOKENS)
    chars = string.ascii_lowercase + string.digits + string.punctuation
    for item in list(words) + list(chars) + ["##" + c for c in chars]:
        if item not in tokens:
            tokens.append(item)
    tokens += [f"[unused{i}]" for i in range(max(0, size - len(tokens)))]
    if len(tokens) > size:
        raise ValueError(f"vocab_size {size} too small for {len(tokens)} base tokens")
    return tokens


def write_random_checkpoint(folder, *, num_labels=2, seed=0, words=(), safetensors=False,
                            extra_keys=True, **shape) -> Path:
    """Write config.json, weights and vocab.txt for a randomly initialised TinyBERT classifier."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dims = dict(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    dims.update(shape)
    torch.manual_seed(seed)
    model = TinyBertForSequenceClassification(TinyBertConfig(num_labels=num_labels, **dims))
    with torch.no_grad():  # wider than the default init so random models give varied predictions
        for name, p in model.named_parameters():
            if "LayerNorm" not in name:
                p.normal_(0.0, 0.2)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if extra_keys:  # TinyBERT task checkpoints carry the distillation projection too
        state["fit_dense.weight"] = torch.zeros(2 * dims["hidden_size"], dims["hidden_size"])
        state["fit_dense.bias"] = torch.zeros(2 * dims["hidden_size"])
    config = dict(dims, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                  initializer_range=0.02)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, str(folder / "pytorch_model.bin"))
    (folder / "vocab.txt").write_text("\n".join(synthetic_vocab(dims["vocab_size"], words)) + "\n")
    return folder


def write_random_hf_checkpoint(folder, *, num_labels=2, seed=0, words=(), do_lower_case=True, max_shard_size=None,
                               **shape) -> Path:
    """A randomly initialised transformers BertForSequenceClassification and its BertTokenizer, written with
    save_pretrained (config.json with architectures, model.safetensors, tokenizer.json, tokenizer_config.json;
    no vocab.txt), as a Hugging Face user's folder looks."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = Path(folder)
    dims = dict(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    dims.update(shape)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(num_labels=num_labels, **dims)).eval()
    with torch.no_grad():  # wider than the default init so random models give varied predictions
        for name, p in model.named_parameters():
            if "LayerNorm" not in name:
                p.normal_(0.0, 0.2)
    model.save_pretrained(str(folder), **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    tokens = synthetic_vocab(dims["vocab_size"], ["[MASK]", *words])
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=do_lower_case)
    tokenizer.save_pretrained(str(folder))
    return folder
