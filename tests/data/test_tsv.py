"""Bad TSV input: an error naming the file and line, exit 4, no output written and an earlier good output
left as it was. Unusual but valid input (BOM, CRLF, trailing blank lines, literal quotes, over-long
sentences) gives exactly the features of the clean file (issue 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SENTENCES, write_tsv
from error_helpers import assert_error, leftovers, run_main, snapshot
from tinybert_infer.data.features import encode, make_tokenizer
from tinybert_infer.errors import DataError
from tinybert_infer.layout import INPUT_NAMES, MANIFEST_NAME
from tinybert_infer.data.tsv import TsvReader

DATA_EXIT = DataError.exit_code
GOOD = "sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in SENTENCES[:4])


def _preprocess(tsv: Path, vocab: Path, out: Path, *extra):
    return run_main("preprocess", "--tsv", tsv, "--vocab", vocab, "--output_dir", out, *extra)


# (case id, file bytes, line named in the message, phrase in the message)
BAD = [
    ("no header", b"a great film\t1\nnot fun\t0\n", 1, "no header line with a 'sentence' column"),
    ("blank first line", b"\nsentence\tlabel\na\t1\n", 1, "no header line (first line is blank)"),
    ("too many columns", (GOOD + "a\tb\t1\n").encode(), 6, "expected 2 tab-separated columns, found 3"),
    ("too few columns", (GOOD + "no label here\n").encode(), 6, "expected 2 tab-separated columns, found 1"),
    ("label outside set", (GOOD + "fine\t2\n").encode(), 6, "label '2' not in the label set {0, 1}"),
    ("empty label", (GOOD + "fine\t\n").encode(), 6, "label '' not in the label set {0, 1}"),
    ("label as word", b"sentence\tlabel\nfine\tpositive\n", 2, "label 'positive' not in the label set"),
    ("invalid utf-8", GOOD.encode() + b"caf\xe9 cr\xe8me\t1\n", 6, "invalid UTF-8"),
    ("latin-1 header", "sentence\tlabel\n\u00c9mile\t1\n".encode("latin-1"), 2, "invalid UTF-8"),
    ("NUL byte", GOOD.encode() + b"nul\x00here\t1\n", 6, "NUL byte in line"),
    ("UTF-16 file", ("\ufeff" + GOOD).encode("utf-16-le"), 1, "UTF-16 encoded; save the file as UTF-8"),
    ("empty file", b"", 1, "empty file"),
    ("header only", b"sentence\tlabel\n", 2, "no data rows after the header"),
    ("blank line inside data", (GOOD[:-1] + "\n\nmore\t1\n").encode(), 6, "blank line inside the data"),
    ("unlabelled file, wrong columns", b"index\tsentence\n0\tfine\n1\n", 3, "expected 2 tab-separated columns"),
]


@pytest.fixture()
def vocab(tiny_checkpoint) -> Path:
    return tiny_checkpoint / "vocab.txt"


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_tsv_is_refused_and_nothing_is_written(case, vocab, tmp_path):
    _, content, line, phrase = case
    tsv = tmp_path / "dev.tsv"
    tsv.write_bytes(content)
    out = tmp_path / "bert_bin"
    code, _, err = _preprocess(tsv, vocab, out)
    assert_error(code, err, DATA_EXIT, f"{tsv}:{line}: ", phrase)
    assert not out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", [BAD[2], BAD[7], BAD[11]], ids=["columns", "utf-8", "empty"])
def test_bad_tsv_leaves_earlier_good_output_intact(case, vocab, tmp_path):
    out = tmp_path / "bert_bin"
    code, _, err = _preprocess(write_tsv(tmp_path / "good.tsv"), vocab, out)
    assert code == 0, err
    before = snapshot(out)
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(case[1])
    code, _, err = _preprocess(bad, vocab, out)
    assert_error(code, err, DATA_EXIT, f"{bad}:{case[2]}: ", case[3])
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_error_after_many_written_samples_removes_them_all(vocab, tmp_path):
    """The bad line comes after two full tokenisation chunks have been written out."""
    out = tmp_path / "bert_bin"
    code, _, err = _preprocess(write_tsv(tmp_path / "good.tsv"), vocab, out)
    assert code == 0, err
    before = snapshot(out)
    rows = [SENTENCES[i % len(SENTENCES)] for i in range(1200)]
    bad = write_tsv(tmp_path / "big.tsv", rows)
    with open(bad, "a", encoding="utf-8") as handle:
        handle.write("last one\tmaybe\n")
    code, _, err = _preprocess(bad, vocab, out)
    assert_error(code, err, DATA_EXIT, f"{bad}:1202: ", "label 'maybe'")
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_missing_tsv(vocab, tmp_path):
    code, _, err = _preprocess(tmp_path / "nope.tsv", vocab, tmp_path / "bert_bin")
    assert_error(code, err, DATA_EXIT, tmp_path / "nope.tsv", "TSV file not found")
    assert not (tmp_path / "bert_bin").exists()


# ---------------------------------------------------------------- valid variants give identical features
def _features(out: Path) -> dict:
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    files = {name: [np.fromfile(out / name / f"input{i}.bin", dtype=np.int64) for i in range(manifest["count"])]
             for name in INPUT_NAMES}
    return {"labels": manifest["labels"], "guids": manifest["guids"],
            **{name: np.stack(rows).tolist() for name, rows in files.items()}}


VARIANTS = {
    "utf-8 BOM": lambda text: b"\xef\xbb\xbf" + text.encode(),
    "CRLF": lambda text: text.replace("\n", "\r\n").encode(),
    "trailing blank lines": lambda text: (text + "\n\n  \n").encode(),
    "BOM + CRLF + trailing blanks": lambda text: b"\xef\xbb\xbf" + (text + "\n\n").replace("\n", "\r\n").encode(),
}


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_valid_variants_give_the_clean_files_features(variant, vocab, tmp_path):
    clean = write_tsv(tmp_path / "clean.tsv")
    code, _, err = _preprocess(clean, vocab, tmp_path / "clean_bin")
    assert code == 0, err
    other = tmp_path / "variant.tsv"
    other.write_bytes(VARIANTS[variant](clean.read_text(encoding="utf-8")))
    code, _, err = _preprocess(other, vocab, tmp_path / "variant_bin")
    assert code == 0, err
    assert _features(tmp_path / "variant_bin") == _features(tmp_path / "clean_bin")


def test_quotes_are_part_of_the_sentence(vocab, tmp_path):
    rows = [('he said "great" , but it was bad', "0"), ('"a fully quoted sentence"', "1"),
            ('"unbalanced', "1"), ("it 's a film", "1"), ('""', "0")]
    tsv = write_tsv(tmp_path / "quotes.tsv", rows)
    assert [ex.text for ex in TsvReader(tsv)] == [text for text, _ in rows]
    code, _, err = _preprocess(tsv, vocab, tmp_path / "bin")
    assert code == 0, err
    expected = encode(make_tokenizer(vocab), [text for text, _ in rows])
    got = _features(tmp_path / "bin")
    for name in INPUT_NAMES:
        assert got[name] == expected[name].tolist()
    quote_id = [ln for ln in vocab.read_text().splitlines()].index('"')
    assert got["input_ids"][1][1] == quote_id  # [CLS] " a fully ...
    assert got["labels"] == [0, 1, 1, 1, 0]


@pytest.mark.parametrize("max_len", [64, 8])
def test_over_long_sentences_are_truncated_not_rejected(max_len, vocab, tmp_path):
    long_text = " ".join(["bad"] * 300)
    tsv = write_tsv(tmp_path / "long.tsv", [(long_text, "0"), ("fun", "1")])
    code, _, err = _preprocess(tsv, vocab, tmp_path / "bin", "--max_seq_length", max_len)
    assert code == 0, err
    tokens = vocab.read_text().splitlines()
    got = _features(tmp_path / "bin")
    ids = got["input_ids"][0]
    assert len(ids) == max_len
    assert ids[0] == tokens.index("[CLS]") and ids[-1] == tokens.index("[SEP]")
    assert set(ids[1:-1]) == {tokens.index("bad")}
    assert got["input_mask"][0] == [1] * max_len
    assert got["labels"] == [0, 1]


def test_unwritable_output_is_one_line_and_leaves_nothing(vocab, tmp_path):
    """An operating-system failure (here a file where the output's parent folder should be) is exit 8."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    code, _, err = _preprocess(write_tsv(tmp_path / "good.tsv"), vocab, blocker / "bert_bin")
    assert_error(code, err, 8, blocker)
    assert blocker.read_text() == "" and leftovers(tmp_path) == []
