"""Stage 3: TSV -> bert_bin/{input_ids,segment_ids,input_mask}/input<i>.bin + manifest."""

import json

import numpy as np
import pytest

from conftest import SENTENCES, run_cli_in_process, write_tsv
from tinybert_infer.data.features import encode, make_tokenizer, preprocess, read_manifest


def load(folder, name, i):
    return np.fromfile(folder / name / f"input{i}.bin", dtype=np.int64)


def test_layout_sizes_and_manifest(tmp_path, tiny_checkpoint, tiny_tsv):
    out = tmp_path / "bert_bin"
    report = preprocess(tiny_tsv, tiny_checkpoint / "vocab.txt", out, show_progress=False)
    n = len(SENTENCES)
    assert report.count == n
    for name in ("input_ids", "segment_ids", "input_mask"):
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == sorted(f"input{i}.bin" for i in range(n))
        assert all((out / name / f).stat().st_size == 512 for f in files)
    manifest = read_manifest(out)
    assert manifest["count"] == n and manifest["max_seq_length"] == 64
    assert manifest["labels"] == [int(label) for _, label in SENTENCES]
    assert len(manifest["tsv"]["sha256"]) == 64 and len(manifest["vocab"]["sha256"]) == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_tokenisation_is_tinybert_s(tmp_path, tiny_checkpoint, tiny_tsv):
    out = tmp_path / "bert_bin"
    preprocess(tiny_tsv, tiny_checkpoint / "vocab.txt", out, show_progress=False)
    vocab = {t: i for i, t in enumerate((tiny_checkpoint / "vocab.txt").read_text().splitlines())}
    ids = load(out, "input_ids", 2)  # "a great film"
    expected = [vocab[t] for t in ("[CLS]", "a", "great", "film", "[SEP]")]
    assert ids[:5].tolist() == expected and not ids[5:].any()
    assert load(out, "input_mask", 2).tolist() == [1] * 5 + [0] * 59
    assert not load(out, "segment_ids", 2).any()
    # lower case, accents stripped, WordPiece continuation: "Émile's MOVIE is good" / "films"
    tok = make_tokenizer(tiny_checkpoint / "vocab.txt")
    assert tok.tokenize("Émile's MOVIE") == ["e", "##m", "##i", "##l", "##e", "'", "s", "movie"]
    assert tok.tokenize("films") == ["film", "##s"]


def test_long_sentences_truncate_to_62_word_pieces(tmp_path, tiny_checkpoint, tiny_tsv):
    out = tmp_path / "bert_bin"
    preprocess(tiny_tsv, tiny_checkpoint / "vocab.txt", out, show_progress=False)
    ids, mask = load(out, "input_ids", 9), load(out, "input_mask", 9)
    vocab = (tiny_checkpoint / "vocab.txt").read_text().splitlines()
    assert mask.sum() == 64 and vocab[ids[0]] == "[CLS]" and vocab[ids[63]] == "[SEP]"
    assert all(vocab[i] == "bad" for i in ids[1:63])


def test_unlabelled_test_tsv(tmp_path, tiny_checkpoint):
    tsv = write_tsv(tmp_path / "test.tsv", [("7", "a great film"), ("8", "bad")], header="index\tsentence")
    # rows are (index, sentence) here: write_tsv writes "<first>\t<second>"
    preprocess(tsv, tiny_checkpoint / "vocab.txt", tmp_path / "bb", show_progress=False)
    manifest = read_manifest(tmp_path / "bb")
    assert manifest["labels"] is None and manifest["guids"] == ["7", "8"] and manifest["count"] == 2


def test_rerun_replaces_the_folder_completely(tmp_path, tiny_checkpoint, tiny_tsv):
    out = tmp_path / "bert_bin"
    preprocess(tiny_tsv, tiny_checkpoint / "vocab.txt", out, show_progress=False)
    small = write_tsv(tmp_path / "small.tsv", SENTENCES[:3])
    preprocess(small, tiny_checkpoint / "vocab.txt", out, show_progress=False)
    assert len(list((out / "input_ids").iterdir())) == 3
    assert read_manifest(out)["count"] == 3


def test_encode_matches_preprocessed_files(tmp_path, tiny_checkpoint, tiny_tsv):
    out = tmp_path / "bert_bin"
    preprocess(tiny_tsv, tiny_checkpoint / "vocab.txt", out, show_progress=False)
    feats = encode(make_tokenizer(tiny_checkpoint / "vocab.txt"), [s for s, _ in SENTENCES])
    for i in range(len(SENTENCES)):
        assert np.array_equal(load(out, "input_ids", i), feats["input_ids"][i])


def test_preprocess_cli_and_script_paths(tmp_path, tiny_checkpoint, tiny_tsv):
    proc = run_cli_in_process("preprocess", "--data_dir", tiny_tsv.parent, "--model_dir", tiny_checkpoint,
                              cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(SENTENCES)} labelled sentences" in proc.stdout
    assert json.loads((tmp_path / "bert_bin" / "manifest.json").read_text())["count"] == len(SENTENCES)


def test_one_tokenizer_per_vocabulary_version(tmp_path, tiny_checkpoint):
    import shutil

    vocab = tmp_path / "vocab.txt"
    shutil.copy(tiny_checkpoint / "vocab.txt", vocab)
    first = make_tokenizer(vocab)
    assert make_tokenizer(vocab) is first  # built once per process (0.44 s each)
    lines = vocab.read_text().splitlines()
    vocab.write_text("\n".join(lines + ["zzzznewword"]) + "\n")
    changed = make_tokenizer(vocab)
    assert changed is not first and len(changed) == len(first) + 1  # a changed file is read again
