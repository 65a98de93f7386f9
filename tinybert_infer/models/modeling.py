"""A compact TinyBERT sequence classifier that mirrors TinyBERT's own modelling code.

Why not transformers' BertModel: its 5.x attention mask (And/Where nodes, SDPA) blocks ONNX Runtime's
Attention fusion and adds ops atc does not need. This module keeps the classic additive mask
``(1 - mask) * -10000`` and eager attention, so the exported graph is the one every runtime fuses.
Numerical equivalence with transformers' BertModel is proven in tests/models/test_modeling.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tinybert_infer.models.config import TinyBertConfig


def _gelu(x: torch.Tensor) -> torch.Tensor:
    # erf form, as in TinyBERT/BERT: exports as Erf, which ORT fuses to (Bias)Gelu and atc maps to Gelu.
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


ACTIVATIONS = {"gelu": _gelu, "relu": torch.relu}  # keys: config.ACTIVATION_NAMES (test_modeling checks both)


class Embeddings(nn.Module):
    def __init__(self, cfg: TinyBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.register_buffer(
            "position_ids", torch.arange(cfg.max_position_embeddings).unsqueeze(0), persistent=False
        )

    def forward(self, input_ids, token_type_ids):
        positions = self.position_ids[:, : input_ids.size(1)]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        x = x + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    def __init__(self, cfg: TinyBertConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_size = cfg.head_size
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def _split_heads(self, x):
        x = x.view(x.size(0), x.size(1), self.num_heads, self.head_size)
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden, additive_mask, queries=None):
        # queries: the rows whose outputs are wanted (default all); keys and values always span every token.
        q = self._split_heads(self.query(hidden if queries is None else queries))
        k = self._split_heads(self.key(hidden))
        v = self._split_heads(self.value(hidden))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size)
        probs = torch.softmax(scores + additive_mask, dim=-1)
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return context.view(context.size(0), context.size(1), self.num_heads * self.head_size)


class DenseLayerNorm(nn.Module):
    """dense -> residual add -> LayerNorm (BERT's SelfOutput and Output blocks)."""

    def __init__(self, in_size: int, cfg: TinyBertConfig):
        super().__init__()
        self.dense = nn.Linear(in_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: TinyBertConfig):
        super().__init__()
        self.self = SelfAttention(cfg)
        self.output = DenseLayerNorm(cfg.hidden_size, cfg)

    def forward(self, hidden, additive_mask, queries=None):
        residual = hidden if queries is None else queries
        return self.output(self.self(hidden, additive_mask, queries), residual)


class Intermediate(nn.Module):
    def __init__(self, cfg: TinyBertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x):
        return self.act(self.dense(x))


class Layer(nn.Module):
    def __init__(self, cfg: TinyBertConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = DenseLayerNorm(cfg.intermediate_size, cfg)

    def forward(self, hidden, additive_mask, queries=None):
        attended = self.attention(hidden, additive_mask, queries)
        return self.output(self.intermediate(attended), attended)


class Encoder(nn.Module):
    """cls_only_last_layer: the classifier reads only the [CLS] row of the last layer, so that layer computes
    its queries, attention output and feed-forward for that row alone (keys/values still over every token).
    Same logits up to float rounding; about 1/layers fewer FLOPs. Off, the graph is the textbook one."""

    def __init__(self, cfg: TinyBertConfig, cls_only_last_layer: bool = True):
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.cls_only_last_layer = cls_only_last_layer

    def forward(self, hidden, additive_mask):
        last = len(self.layer) - 1
        for index, layer in enumerate(self.layer):
            queries = hidden[:, :1] if (self.cls_only_last_layer and index == last) else None
            hidden = layer(hidden, additive_mask, queries)
        return hidden


class Pooler(nn.Module):
    def __init__(self, cfg: TinyBertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden):
        return self.pool(hidden[:, 0])

    def pool(self, cls_hidden):
        """[..., hidden] [CLS] rows -> pooled output (the packed graph's rows are [rows, slots, hidden])."""
        return torch.tanh(self.dense(cls_hidden))


class BertModel(nn.Module):
    def __init__(self, cfg: TinyBertConfig, cls_only_last_layer: bool = True):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg, cls_only_last_layer)
        self.pooler = Pooler(cfg)

    def forward(self, input_ids, token_type_ids, attention_mask):
        # Classic BERT additive mask: the pattern ORT's Attention fusion and atc recognise.
        extended = attention_mask.unsqueeze(1).unsqueeze(2).to(torch.float32)
        additive_mask = (1.0 - extended) * -10000.0
        hidden = self.encoder(self.embeddings(input_ids, token_type_ids), additive_mask)
        return self.pooler(hidden)


class TinyBertForSequenceClassification(nn.Module):
    """TinyBERT's head: logits = classifier(relu(pooled_output)); with cfg.relu_head False, transformers' head
    classifier(pooled_output) (its dropout is the identity in eval mode). The encoder is the same for both."""

    def __init__(self, cfg: TinyBertConfig, cls_only_last_layer: bool = True):
        super().__init__()
        self.config = cfg
        self.bert = BertModel(cfg, cls_only_last_layer)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, input_ids, segment_ids, input_mask):
        return self.classify(self.bert(input_ids, segment_ids, input_mask))

    def classify(self, pooled):
        return self.classifier(torch.relu(pooled) if self.config.relu_head else pooled)


def _block_mask(query_sentences: torch.Tensor, key_sentences: torch.Tensor) -> torch.Tensor:
    """Additive mask [rows, 1, queries, keys]: 0 where query and key belong to the same sentence, -10000 elsewhere
    (the classic BERT value: exp(-10000) is 0 in float32, as for padding in the unpacked graph)."""
    same = (query_sentences.unsqueeze(2) == key_sentences.unsqueeze(1)).to(torch.float32)
    return ((1.0 - same) * -10000.0).unsqueeze(1)


class PackedSequenceClassifier(nn.Module):
    """The same classifier over packed rows: several sentences laid end to end in one row of W tokens, so the
    linear layers (most of the FLOPs) run on real tokens instead of padding, at one static shape.

    Inputs by role (run/packing.py builds them): input_ids, segment_ids [rows, W]; position_ids [rows, W] (each
    sentence counts from 0); sentence_ids [rows, W] (1.. per sentence in its row, 0 for unused positions);
    cls_index [rows, S] (where each sentence starts). Attention stays within a sentence (block mask), so every
    sentence's logits equal the unpacked model's up to float rounding. Output: logits [rows, S, labels]; slots
    with no sentence give values nobody reads. The last layer runs for the [CLS] rows only, as in Encoder."""

    def __init__(self, model: TinyBertForSequenceClassification):
        super().__init__()
        self.model = model

    def forward(self, input_ids, segment_ids, position_ids, sentence_ids, cls_index):
        bert = self.model.bert
        emb = bert.embeddings
        hidden = emb.word_embeddings(input_ids) + emb.position_embeddings(position_ids)
        hidden = emb.LayerNorm(hidden + emb.token_type_embeddings(segment_ids))
        layers = bert.encoder.layer
        mask = _block_mask(sentence_ids, sentence_ids)
        for layer in layers[:-1]:
            hidden = layer(hidden, mask)
        cls_hidden = torch.gather(hidden, 1, cls_index.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))
        cls_mask = _block_mask(torch.gather(sentence_ids, 1, cls_index), sentence_ids)
        cls_hidden = layers[-1](hidden, cls_mask, cls_hidden)
        return self.model.classify(bert.pooler.pool(cls_hidden))
