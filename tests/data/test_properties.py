"""Property-based tests (hypothesis) for the two parsers of untrusted files: the TSV reader and the
result-file reader. Whatever the bytes, they either return exactly what was written or raise the
pipeline's own one-line error, never anything else (issue 5)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinybert_infer.errors import DataError, ResultError
from tinybert_infer.run.results import read_output, write_output
from tinybert_infer.data.tsv import TsvReader

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Anything a sentence may hold: every printable or odd character except the TSV's own separators.
sentence_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r\x00"), max_size=40)
labels = st.sampled_from(["0", "1"])


def _read(path, label_set=("0", "1")):
    reader = TsvReader(path, label_set=label_set)
    return reader, list(reader)


@SETTINGS
@given(rows=st.lists(st.tuples(sentence_text, labels), min_size=1, max_size=12), bom=st.booleans(),
       crlf=st.booleans(), trailing=st.lists(st.sampled_from(["", " ", "\t", "  \t "]), max_size=3),
       label_first=st.booleans())
def test_tsv_reader_returns_exactly_what_was_written(tmp_path, rows, bom, crlf, trailing, label_first):
    header = "label\tsentence" if label_first else "sentence\tlabel"
    lines = [header] + [f"{label}\t{text}" if label_first else f"{text}\t{label}" for text, label in rows]
    eol = "\r\n" if crlf else "\n"
    data = (b"\xef\xbb\xbf" if bom else b"") + (eol.join(lines + trailing) + eol).encode("utf-8")
    path = tmp_path / "p.tsv"
    path.write_bytes(data)
    reader, examples = _read(path)
    assert [(ex.text, ex.label) for ex in examples] == rows
    assert [ex.line for ex in examples] == list(range(2, len(rows) + 2))
    assert reader.sha256 == hashlib.sha256(data).hexdigest()


BAD_LINES = {
    "extra column": "text\t1\textra",
    "missing column": "just text",
    "label outside set": "text\t7",
    "NUL byte": "te\x00xt\t1",
}


@SETTINGS
@given(rows=st.lists(st.tuples(sentence_text, labels), min_size=0, max_size=10), data=st.data(),
       kind=st.sampled_from(sorted(BAD_LINES) + ["invalid utf-8"]))
def test_tsv_reader_names_the_first_bad_line(tmp_path, rows, data, kind):
    at = data.draw(st.integers(0, len(rows)), label="bad row index")
    good = [f"{text}\t{label}".encode() for text, label in rows]
    bad = b"caf\xe9\t1" if kind == "invalid utf-8" else BAD_LINES[kind].encode()
    lines = [b"sentence\tlabel"] + good[:at] + [bad] + good[at:]
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError) as info:
        _read(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{at + 2}: "), message
    assert "\n" not in message


@SETTINGS
@given(body=st.binary(max_size=300), with_header=st.booleans())
def test_tsv_reader_on_arbitrary_bytes_returns_or_raises_data_error(tmp_path, body, with_header):
    path = tmp_path / "any.tsv"
    path.write_bytes((b"sentence\tlabel\n" if with_header else b"") + body)
    try:
        _, examples = _read(path)
    except DataError as exc:
        assert str(exc).startswith(f"{path}:") and "\n" not in str(exc)
        return
    for ex in examples:  # accepted: then every row is well-formed
        assert ex.label in ("0", "1") and "\t" not in ex.text and "\x00" not in ex.text


# ---------------------------------------------------------------- result files
finite32 = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32)


@SETTINGS
@given(values=st.lists(finite32, min_size=1, max_size=6), fmt=st.sampled_from(["TXT", "BIN", "NPY"]))
def test_result_files_read_back_what_was_written(tmp_path, values, fmt):
    logits = np.array([values], dtype=np.float32)
    path = tmp_path / f"input0_0.{fmt.lower()}"
    path.unlink(missing_ok=True)  # tmp_path is shared by hypothesis' examples; write_output never overwrites
    write_output(path, logits, fmt)
    got = read_output(path, len(values))
    tolerance = 5.1e-7 if fmt == "TXT" else 0.0  # TXT is ais_bench's %f: six decimals
    assert np.all(np.abs(got - logits[0].astype(np.float64)) <= tolerance + 1e-12 * np.abs(got))


@SETTINGS
@given(values=st.lists(finite32, min_size=2, max_size=6), data=st.data(), fmt=st.sampled_from(["TXT", "BIN", "NPY"]))
def test_non_finite_logits_are_refused(tmp_path, values, data, fmt):
    where = data.draw(st.integers(0, len(values) - 1), label="position")
    values[where] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="bad value")
    path = tmp_path / f"input0_0.{fmt.lower()}"
    path.unlink(missing_ok=True)
    write_output(path, np.array([values], dtype=np.float32), fmt)
    with pytest.raises(ResultError, match="non-finite value"):
        read_output(path, len(values))


def _assert_values_or_one_line_error(path, width: int) -> None:
    """read_output gives `width` finite values, or a one-line ResultError naming the file."""
    try:
        values = read_output(path, width)
    except ResultError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    assert values.shape == (width,) and np.all(np.isfinite(values))


@SETTINGS
@given(body=st.binary(max_size=200), fmt=st.sampled_from(["txt", "bin", "npy"]), width=st.integers(1, 4))
def test_result_reader_on_arbitrary_bytes_returns_or_raises_result_error(tmp_path, body, fmt, width):
    path = tmp_path / f"input0_0.{fmt}"
    path.write_bytes(body)
    _assert_values_or_one_line_error(path, width)


@SETTINGS
@given(text=st.text(alphabet="0123456789.-+eE naif \t", max_size=40), width=st.integers(1, 3))
def test_txt_reader_accepts_only_numbers(tmp_path, text, width):
    """Decided independently of the reader: a line of exactly `width` finite numbers is read as them; any
    other line is refused with ResultError (a reader refusing good numbers fails here too)."""
    path = tmp_path / "input0_0.txt"
    path.write_text(text + "\n")
    tokens = text.split()

    def finite_number(token: str) -> bool:
        try:
            return math.isfinite(float(token))
        except ValueError:
            return False

    if tokens and len(tokens) == width and all(map(finite_number, tokens)):
        assert read_output(path, width).tolist() == [float(t) for t in tokens]
    else:
        with pytest.raises(ResultError):
            read_output(path, width)


@SETTINGS
@given(array=hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_, np.complex64]),
    shape=st.lists(st.integers(0, 3), max_size=3).map(tuple)), width=st.integers(1, 3))
def test_npy_reader_on_any_array_returns_or_raises_result_error(tmp_path, array, width):
    path = tmp_path / "input0_0.npy"
    np.save(path, array)
    _assert_values_or_one_line_error(path, width)
