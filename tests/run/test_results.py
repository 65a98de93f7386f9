"""Bad or incomplete result folders: postprocessing refuses them naming the first offending file, exit 5,
never scores a subset and writes nothing; result folders are never overwritten (issue 5)."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import SENTENCES, write_tsv
from error_helpers import WritesMarker, assert_error, run_main, snapshot
from tinybert_infer.errors import DataError, ResultError
from tinybert_infer.run.results import (INCOMPLETE_MARKER, TIMESTAMP_FORMAT, create_result_dir, metrics_path,
                                        predictions_path, summary_path)

RESULT_EXIT = ResultError.exit_code
N = len(SENTENCES)  # 13 samples: input10..input12 sort after input9 only in natural order
INPUTS = ("input_ids", "segment_ids", "input_mask")


def _infer(work: Path, checkpoint: Path, *extra):
    dirs = ",".join(str(work / "bert_bin" / name) for name in INPUTS)
    return run_main("infer", "--backend", "torch", "--model_dir", checkpoint, "--batchsize", "4",
                    "--input", dirs, "--output", work / "result", *extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_checkpoint) -> Path:
    """One real run (TXT and BIN outputs) to copy from: work/{bert_bin,result/txt,result/bin}."""
    work = tmp_path_factory.mktemp("finished")
    tsv = write_tsv(work / "dev.tsv")
    code, _, err = run_main("preprocess", "--tsv", tsv, "--vocab", tiny_checkpoint / "vocab.txt",
                            "--output_dir", work / "bert_bin")
    assert code == 0, err
    for fmt in ("TXT", "BIN"):
        code, _, err = _infer(work, tiny_checkpoint, "--outfmt", fmt, "--output_dirname", fmt.lower())
        assert code == 0, err
    return work


@pytest.fixture()
def work(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "work"))


def _postprocess(work: Path, folder: str = "txt"):
    return run_main("postprocess", "--result_dir", work / "result" / folder, "--bin_dir", work / "bert_bin")


def _assert_not_scored(work: Path, folder: str = "txt") -> None:
    result_dir = work / "result" / folder
    assert not metrics_path(result_dir).exists(), "a refused folder must not be scored"
    assert not predictions_path(result_dir).exists()


def test_the_untouched_run_scores(work):
    code, out, err = _postprocess(work)
    assert code == 0, err
    assert re.search(r"^acc:\d\.\d{4}$", out, re.M)
    code, out, err = _postprocess(work, "bin")
    assert code == 0, err


def _write(name: str, content: bytes):
    return lambda folder: (folder / name).write_bytes(content)


def _remove(*names):
    return lambda folder: [(folder / n).unlink() for n in names]


# (case id, what to do to result/txt, phrase(s) in the message; the message names result/txt or the file)
CASES = [
    ("one sample missing", _remove("input5_0.txt"), ["txt: missing output file(s) input5_0.txt",
                                                     "refusing to score a subset"]),
    ("many samples missing", _remove(*[f"input{i}_0.txt" for i in range(3, 11)]),
     ["missing output file(s) input3_0.txt, input4_0.txt", "(8 missing in all)"]),
    ("all samples missing", _remove(*[f"input{i}_0.txt" for i in range(N)]), ["missing output file(s) input0_0.txt"]),
    ("unparsable number", _write("input3_0.txt", b"0.123 abc \n"), ["input3_0.txt: unparsable number"]),
    ("comma decimal", _write("input3_0.txt", b"0,5 0,25 \n"), ["input3_0.txt: unparsable number"]),
    ("nan", _write("input3_0.txt", b"nan 0.100000 \n"), ["input3_0.txt: non-finite value"]),
    ("inf", _write("input3_0.txt", b"0.100000 -inf \n"), ["input3_0.txt: non-finite value"]),
    ("too wide", _write("input3_0.txt", b"0.1 0.2 0.3 \n"), ["input3_0.txt: 3 values, expected 2"]),
    ("too narrow", _write("input3_0.txt", b"0.1 \n"), ["input3_0.txt: 1 values, expected 2"]),
    ("empty file", _write("input3_0.txt", b""), ["input3_0.txt: empty output file"]),
    ("binary garbage", _write("input3_0.txt", b"\x00\xff\xfe\x80"), ["input3_0.txt: not a text file"]),
    ("incomplete marker", lambda f: (f / INCOMPLETE_MARKER).write_text("pid 1\n"),
     ["txt: incomplete run (interrupted or still running)"]),
    ("folder gone", lambda f: shutil.rmtree(f), ["txt: result folder not found"]),
    ("more outputs than samples", _write("input13_0.txt", b"0.1 0.2 \n"),
     ["14 output files but the manifest describes 13 samples"]),
    ("first offending file in natural order", lambda f: [_write(n, b"nan nan \n")(f)
                                                         for n in ("input10_0.txt", "input2_0.txt")],
     ["input2_0.txt: non-finite value"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_result_folder_is_refused(case, work):
    _, damage, phrases = case
    damage(work / "result" / "txt")
    code, _, err = _postprocess(work)
    assert_error(code, err, RESULT_EXIT, *phrases)
    _assert_not_scored(work)


BIN_CASES = [
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[:4]), "1 values, expected 2"),
    ("too long", lambda p: p.write_bytes(p.read_bytes() * 2), "4 values, expected 2"),
    ("empty", lambda p: p.write_bytes(b""), "no values (empty output)"),
    ("nan", lambda p: np.array([np.nan, 1], np.float32).tofile(p), "non-finite value"),
]


@pytest.mark.parametrize("case", BIN_CASES, ids=[c[0] for c in BIN_CASES])
def test_bad_bin_output_is_refused(case, work):
    path = work / "result" / "bin" / "input7_0.bin"
    case[1](path)
    code, _, err = _postprocess(work, "bin")
    assert_error(code, err, RESULT_EXIT, path, case[2])
    _assert_not_scored(work, "bin")


def test_npy_output_with_a_pickle_is_refused_and_never_run(work, tmp_path):
    marker = tmp_path / "pwned"
    folder = work / "result" / "bin"
    for i in range(N):
        (folder / f"input{i}_0.bin").unlink()
        np.save(folder / f"input{i}_0.npy", np.zeros((1, 2), np.float32))
    np.save(folder / "input0_0.npy", np.array([WritesMarker(marker)], dtype=object), allow_pickle=True)
    code, _, err = _postprocess(work, "bin")
    assert_error(code, err, RESULT_EXIT, folder / "input0_0.npy", "Object arrays cannot be loaded")
    assert not marker.exists(), "the pickled payload ran"
    _assert_not_scored(work, "bin")


def test_npy_output_of_strings_is_refused(work):
    folder = work / "result" / "bin"
    for i in range(N):
        (folder / f"input{i}_0.bin").unlink()
        np.save(folder / f"input{i}_0.npy", np.array([["1.0", "2.0"]]))
    code, _, err = _postprocess(work, "bin")
    assert_error(code, err, RESULT_EXIT, "input0_0.npy", "non-numeric array")
    _assert_not_scored(work, "bin")


def test_results_of_other_inputs_are_refused(work, tiny_checkpoint):
    rows = list(reversed(SENTENCES))
    code, _, err = run_main("preprocess", "--tsv", write_tsv(work / "other.tsv", rows), "--vocab",
                            tiny_checkpoint / "vocab.txt", "--output_dir", work / "bert_bin")
    assert code == 0, err
    code, _, err = _postprocess(work)
    assert_error(code, err, RESULT_EXIT, "produced from different preprocessed inputs")
    _assert_not_scored(work)


# ---------------------------------------------------------------- result folders are never reused
def test_named_result_folder_is_never_overwritten(work, tiny_checkpoint):
    before = snapshot(work / "result")
    code, _, err = _infer(work, tiny_checkpoint, "--outfmt", "TXT", "--output_dirname", "txt")
    assert_error(code, err, RESULT_EXIT, work / "result" / "txt", "already exists; results are never overwritten")
    assert snapshot(work / "result") == before


def test_name_of_a_deleted_folder_with_a_summary_is_not_reused(work, tiny_checkpoint):
    shutil.rmtree(work / "result" / "txt")
    before = snapshot(work / "result")
    code, _, err = _infer(work, tiny_checkpoint, "--output_dirname", "txt")
    assert_error(code, err, RESULT_EXIT, "already exists")
    assert snapshot(work / "result") == before


@pytest.mark.parametrize("name", ["../escape", "a/b", ".", "..", "/abs", ".hidden", ""])
def test_unsafe_output_dirname_is_refused(work, tiny_checkpoint, name):
    before = snapshot(work)
    code, _, err = _infer(work, tiny_checkpoint, "--output_dirname", name)
    assert_error(code, err, RESULT_EXIT, "--output_dirname", "use a plain folder name")
    assert snapshot(work) == before


def test_runs_in_the_same_second_get_different_folders(tmp_path):
    folders, errors = [], []

    def claim():
        try:
            folders.append(create_result_dir(tmp_path))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = sorted(f.name for f in folders)
    assert len(set(names)) == 3, names
    for name in names:
        assert re.fullmatch(r"\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d", name), name  # ais_bench's exact format
        assert (tmp_path / name / INCOMPLETE_MARKER).exists()
    assert TIMESTAMP_FORMAT == "%Y_%m_%d-%H_%M_%S"


def test_back_to_back_runs_get_their_own_complete_folders(work, tiny_checkpoint):
    made = []
    for _ in range(2):
        code, out, err = _infer(work, tiny_checkpoint)
        assert code == 0, err
        made.append(re.search(r"^result folder: (\S+)$", out, re.M).group(1))
    assert made[0] != made[1]
    for name in made:
        folder = work / "result" / name
        assert summary_path(folder).is_file() and not (folder / INCOMPLETE_MARKER).exists()
        assert len(list(folder.glob("input*_0.bin"))) == N


def test_inference_failing_mid_run_leaves_no_result_folder(work, tiny_checkpoint):
    """Sample 9's file is short: the run stops there and removes the folder it had started."""
    (work / "bert_bin" / "input_mask" / "input9.bin").write_bytes(b"\x01" * 24)
    before = snapshot(work / "result")
    code, _, err = _infer(work, tiny_checkpoint)
    assert_error(code, err, DataError.exit_code, work / "bert_bin" / "input_mask" / "input9.bin",
                 "24 bytes, expected 512")
    assert snapshot(work / "result") == before  # hidden entries included: nothing set aside either


@pytest.mark.parametrize("extra", [(), ("--dynamic_length",)])
def test_a_half_size_int64_file_is_refused_not_read_as_int32(work, tiny_checkpoint, extra):
    """A truncated int64 file of exactly 64 x 4 bytes has an int32 file's size; the manifest says int64, so it
    is an error naming the file, never 64 int32 values made of the first 32 ids and their zero high halves."""
    path = work / "bert_bin" / "input_ids" / "input0.bin"
    path.write_bytes(path.read_bytes()[:256])
    before = snapshot(work / "result")
    code, _, err = _infer(work, tiny_checkpoint, *extra)
    assert_error(code, err, DataError.exit_code, path, "256 bytes, expected 512")
    assert snapshot(work / "result") == before
