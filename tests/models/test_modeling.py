"""The compact TinyBERT module is numerically the transformers BertModel + TinyBERT head."""

import numpy as np
import pytest
import torch

from conftest import random_batch
from tinybert_infer.models.checkpoint import load_model, read_checkpoint
from tinybert_infer.models.synthetic import write_random_checkpoint


def transformers_logits(checkpoint, ids, seg, mask):
    from transformers import BertConfig, BertModel

    cfg = checkpoint.config
    hf_cfg = BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
                        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
                        type_vocab_size=cfg.type_vocab_size, hidden_act="gelu", layer_norm_eps=1e-12,
                        attn_implementation="eager")
    bert = BertModel(hf_cfg).eval()
    state = {k[len("bert."):]: v for k, v in checkpoint.state_dict.items() if k.startswith("bert.")}
    missing, _ = bert.load_state_dict(state, strict=False)
    assert not [m for m in missing if "position_ids" not in m]
    with torch.inference_mode():
        pooled = bert(input_ids=ids, token_type_ids=seg, attention_mask=mask).pooler_output
        w, b = checkpoint.state_dict["classifier.weight"], checkpoint.state_dict["classifier.bias"]
        return torch.relu(pooled) @ w.T + b


@pytest.mark.parametrize("shape", [
    dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64),
    dict(num_hidden_layers=3, hidden_size=48, num_attention_heads=3, intermediate_size=100),
])
@pytest.mark.parametrize("cls_only_last_layer", [True, False], ids=["cls-only-last-layer", "full-last-layer"])
def test_matches_transformers_bert_with_tinybert_head(tmp_path, shape, cls_only_last_layer):
    folder = write_random_checkpoint(tmp_path / "ck", num_labels=3, seed=7, **shape)
    checkpoint, model = load_model(folder, cls_only_last_layer=cls_only_last_layer)
    assert model.bert.encoder.cls_only_last_layer is cls_only_last_layer
    ids, seg, mask = random_batch(checkpoint.config.vocab_size)
    with torch.inference_mode():
        ours = model(ids, seg, mask)
    theirs = transformers_logits(checkpoint, ids, seg, mask)
    assert ours.shape == (6, 3)
    assert torch.max(torch.abs(ours - theirs)).item() < 1e-5


def test_sizes_come_from_the_checkpoint(tmp_path):
    folder = write_random_checkpoint(tmp_path / "ck", num_labels=5, num_hidden_layers=1, hidden_size=24,
                                     num_attention_heads=2, intermediate_size=40, vocab_size=150)
    cfg = read_checkpoint(folder).config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_labels, cfg.vocab_size) == \
        (1, 24, 2, 5, 150)


def test_safetensors_and_bin_load_the_same_model(tmp_path):
    a = write_random_checkpoint(tmp_path / "a", seed=3)
    b = write_random_checkpoint(tmp_path / "b", seed=3, safetensors=True)
    ids = torch.randint(0, 200, (2, 64))
    ones = torch.ones(2, 64, dtype=torch.int64)
    with torch.inference_mode():
        la = load_model(a)[1](ids, ones * 0, ones)
        lb = load_model(b)[1](ids, ones * 0, ones)
    assert torch.equal(la, lb)
    assert read_checkpoint(b).weights_file.name == "model.safetensors"


def test_fit_dense_and_other_extra_keys_are_ignored(tmp_path):
    folder = write_random_checkpoint(tmp_path / "ck", extra_keys=True)
    assert "fit_dense.weight" in read_checkpoint(folder).state_dict
    load_model(folder)  # no error


def test_flops_per_sample_matches_reference_notes():
    from tinybert_infer.models.config import TinyBertConfig
    from tinybert_infer.models.synthetic import TINYBERT_4L_312D

    cfg = TinyBertConfig(num_labels=2, **TINYBERT_4L_312D)
    assert cfg.flops_per_sample(64) / 1e9 == pytest.approx(0.603, abs=0.001)


def test_cls_only_last_layer_does_less_work_and_counts_it():
    from tinybert_infer.models.config import TinyBertConfig
    from tinybert_infer.models.synthetic import TINYBERT_4L_312D

    cfg = TinyBertConfig(num_labels=2, **TINYBERT_4L_312D)
    full, executed = cfg.flops_per_sample(64), cfg.executed_flops_per_sample(64)
    assert cfg.executed_flops_per_sample(64, cls_only_last_layer=False) == full
    # 3 full layers + the last one's key/value projections over 64 tokens + one row of everything else.
    h, i = 312, 1200
    last = 2 * (2 * 64 * h * h + 2 * h * h + 2 * h * i + 2 * 64 * h)
    assert executed == pytest.approx(full * 3 / 4 + last)
    assert 0.78 < executed / full < 0.80


def test_cls_only_model_only_reads_the_cls_row_of_the_last_layer(tmp_path):
    """Changing a non-[CLS] token changes the logits only through the keys/values (both models agree)."""
    folder = write_random_checkpoint(tmp_path / "ck", seed=1, num_hidden_layers=1)
    _, pruned = load_model(folder)
    _, full = load_model(folder, cls_only_last_layer=False)
    ids = torch.randint(1, 200, (3, 64))
    seg, mask = torch.zeros_like(ids), torch.ones_like(ids)
    with torch.inference_mode():
        assert torch.allclose(pruned(ids, seg, mask), full(ids, seg, mask), atol=1e-5)
        ids[:, 10] = 7
        assert torch.allclose(pruned(ids, seg, mask), full(ids, seg, mask), atol=1e-5)


def test_every_activation_a_checkpoint_may_name_is_computed():
    """checkpoint.py accepts the hidden_act values of config.ACTIVATION_NAMES without importing torch; the
    model must compute exactly those."""
    from tinybert_infer.models.config import ACTIVATION_NAMES
    from tinybert_infer.models.modeling import ACTIVATIONS

    assert set(ACTIVATIONS) == set(ACTIVATION_NAMES)
