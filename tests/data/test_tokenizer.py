"""The project's BERT tokenizer (the `tokenizers` pipeline, built directly) gives transformers' BertTokenizer ids
for every normalisation switch, with truncation and padding as preprocessing uses them."""

import itertools
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, SENTENCES, SHARED
from tinybert_infer.data.features import TokenizerSettings, WordPieceTokenizer, encode, load_vocab, make_tokenizer
from tinybert_infer.errors import DataError
from tinybert_infer.models.synthetic import synthetic_vocab

WORDS = ["good", "bad", "movie", "film", "##s", "##ing", "émile", "emile", "Émile", "MOVIE", "café", "cafe", "中",
         "文", "naïve", "naive", "'", "\"", "-", "##ly", "un", "##believ", "##able", "[", "]", "sep", "cls", "mask"]
TEXTS = [s for s, _ in SENTENCES] + [
    "", "   ", "Émile's CAFÉ is naïve", "unbelievably good-ish films", "中文 movie 中文", "[SEP] inside [CLS] text",
    "[sep] lower-case special", "[MASK] masked", "a\tb\u00a0c\u200bd", "x" * 150, "good" * 30, "control\x00char\x07s",
    "Ｆｕｌｌｗｉｄｔｈ", "good, bad; movie: film! (yes) ...", "'quoted' \"double\"",
]
SWITCHES = [TokenizerSettings(lower, strip, chinese)
            for lower, strip, chinese in itertools.product((True, False), (None, True, False), (True, False))]


def _transformers_tokenizer(vocab: dict, settings: TokenizerSettings):
    from transformers import BertTokenizer

    return BertTokenizer(vocab=vocab, do_lower_case=settings.do_lower_case, strip_accents=settings.strip_accents,
                         tokenize_chinese_chars=settings.tokenize_chinese_chars,
                         mask_token="[MASK]" if "[MASK]" in vocab else None)


@pytest.fixture(scope="module", params=[True, False], ids=["with-mask", "without-mask"])
def vocab_file(request, tmp_path_factory):
    words = (["[MASK]"] if request.param else []) + WORDS
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(synthetic_vocab(300, words)) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("settings", SWITCHES, ids=lambda s: s.label())
def test_ids_equal_transformers_for_every_switch(vocab_file, settings):
    vocab = load_vocab(vocab_file)
    ours = make_tokenizer(vocab_file, settings)
    theirs = _transformers_tokenizer(vocab, settings)
    assert len(ours) == len(theirs) == len(vocab)
    for max_length in (64, 8, 2):
        expected = theirs(TEXTS, max_length=max_length, truncation=True)["input_ids"]
        assert ours.token_ids(TEXTS, max_length) == expected, max_length


def test_encode_pads_as_transformers_max_length_padding(vocab_file):
    vocab = load_vocab(vocab_file)
    theirs = _transformers_tokenizer(vocab, TokenizerSettings())(
        TEXTS, max_length=16, truncation=True, padding="max_length", return_token_type_ids=True,
        return_attention_mask=True)
    ours = encode(make_tokenizer(vocab_file), TEXTS, 16)
    for name, key in (("input_ids", "input_ids"), ("segment_ids", "token_type_ids"), ("input_mask", "attention_mask")):
        assert ours[name].dtype == np.int64 and ours[name].shape == (len(TEXTS), 16)
        assert ours[name].tolist() == theirs[key], name


def test_special_tokens_in_text_are_matched_verbatim(vocab_file):
    vocab = load_vocab(vocab_file)
    ids = make_tokenizer(vocab_file).token_ids(["[SEP] [sep]"], 64)[0]
    assert ids[:2] == [vocab["[CLS]"], vocab["[SEP]"]]  # the exact literal is the token; "[sep]" is split
    assert ids.count(vocab["[SEP]"]) == 2 and ids[-1] == vocab["[SEP]"]


def test_a_vocabulary_without_a_required_token_is_one_clear_error(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(t for t in synthetic_vocab(200) if t != "[CLS]") + "\n")
    with pytest.raises(DataError, match=r"vocab\.txt: the vocabulary has no \[CLS\] token"):
        WordPieceTokenizer(path, load_vocab(path), TokenizerSettings())


def test_tokenising_does_not_import_transformers(tiny_checkpoint):
    """Importing transformers took 0.9 s of a 2.6 s cached `score` run: tokenising must not pull it in."""
    code = ("import sys; from tinybert_infer.data.features import encode, make_tokenizer; "
            f"encode(make_tokenizer({str(tiny_checkpoint / 'vocab.txt')!r}), ['a good film']); "
            "assert 'transformers' not in sys.modules and 'torch' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'torch'))[:5]")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_shared_vocabulary_gives_transformers_ids_on_every_sst2_sentence():
    from tinybert_infer.data.features import read_tokenizer_settings
    from tinybert_infer.data.tsv import TsvReader

    vocab_file = SHARED / "SST-2_model" / "vocab.txt"
    settings = read_tokenizer_settings(vocab_file.parent)
    texts = [ex.text for name in ("dev.tsv", "test.tsv")
             for ex in TsvReader(SHARED / "glue_dir" / "SST-2" / name, label_set=None)]
    assert len(texts) == 872 + 1821
    expected = _transformers_tokenizer(load_vocab(vocab_file), settings)(texts, max_length=64, truncation=True)
    assert make_tokenizer(vocab_file, settings).token_ids(texts, 64) == expected["input_ids"]
