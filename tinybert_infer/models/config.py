"""The network's shape as config.json gives it, and its FLOPs: no torch here, so commands that only read a
checkpoint's files (preprocess, postprocess, the accelerator tools) start without importing it."""

from __future__ import annotations

from dataclasses import dataclass

ACTIVATION_NAMES = ("gelu", "relu")  # the hidden_act values modeling.ACTIVATIONS computes


@dataclass(frozen=True)
class TinyBertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    num_labels: int
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    relu_head: bool = True  # TinyBERT's head; False: transformers' BertForSequenceClassification (specs.py)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def flops_per_sample(self, seq_len: int) -> float:
        """Multiply-adds x2 of the encoder's matrix products (embeddings and pooler are negligible): the model's
        FLOPs as its config defines them, every token through every layer."""
        h, i, s = self.hidden_size, self.intermediate_size, seq_len
        return 2.0 * self.num_hidden_layers * s * (4 * h * h + 2 * h * i + 2 * s * h)

    def executed_flops_per_sample(self, seq_len: int, cls_only_last_layer: bool = True) -> float:
        """What a graph with the last layer cut to the [CLS] row still computes: that layer keeps its key and
        value projections over every token, and does everything else for one row."""
        if not cls_only_last_layer:
            return self.flops_per_sample(seq_len)
        h, i, s = self.hidden_size, self.intermediate_size, seq_len
        full = 2.0 * (self.num_hidden_layers - 1) * s * (4 * h * h + 2 * h * i + 2 * s * h)
        last = 2.0 * (2 * s * h * h + (2 * h * h + 2 * h * i + 2 * s * h))
        return full + last
