"""data.read_samples: a folder of per-sample files read into one array, with read_sample's checks and messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinybert_infer.data.features import path_prefix, read_sample, read_samples
from tinybert_infer.run.length import read_sample_files
from tinybert_infer.errors import DataError

SEQ = 8


def _write(folder: Path, rows, dtype="int64", npy=()):
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, row in enumerate(rows):
        values = np.asarray(row, dtype=dtype)
        if i in npy:
            names.append(f"input{i}.npy")
            np.save(folder / names[-1], values)
        else:
            names.append(f"input{i}.bin")
            values.tofile(folder / names[-1])
    return names


@pytest.mark.parametrize("dtype", ["int64", "int32"])
def test_read_samples_gives_what_read_sample_gives_per_file(tmp_path, dtype):
    rows = np.arange(5 * SEQ).reshape(5, SEQ) + 100
    names = _write(tmp_path / "ids", rows, dtype, npy={2})
    got = read_samples(tmp_path / "ids", names, SEQ, dtype)
    expected = np.stack([read_sample(tmp_path / "ids" / n, SEQ, dtype) for n in names])
    assert got.dtype == np.int64 and got.shape == (5, SEQ)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, rows)


@pytest.mark.parametrize("values, message", [(SEQ // 2, f"{SEQ * 4} bytes, expected {SEQ * 8}"),
                                             (SEQ + 1, f"{(SEQ + 1) * 8} bytes, expected {SEQ * 8}")])
def test_a_file_of_the_wrong_size_is_refused_naming_it(tmp_path, values, message):
    names = _write(tmp_path / "ids", [np.ones(SEQ), np.ones(values), np.ones(SEQ)])
    with pytest.raises(DataError, match=message) as info:
        read_samples(tmp_path / "ids", names, SEQ, "int64")
    assert str(tmp_path / "ids" / "input1.bin") in str(info.value)


def test_a_missing_file_is_a_data_error_naming_it(tmp_path):
    names = _write(tmp_path / "ids", [np.ones(SEQ)]) + ["input1.bin"]
    with pytest.raises(DataError, match="unreadable input file") as info:
        read_samples(tmp_path / "ids", names, SEQ, "int64")
    assert "input1.bin" in str(info.value)


def test_length_aware_reading_refuses_a_half_size_int64_file(tmp_path):
    for name in ("input_ids", "segment_ids", "input_mask"):
        _write(tmp_path / name, [np.ones(SEQ), np.ones(SEQ)])
    np.ones(SEQ // 2, np.int64).tofile(tmp_path / "input_mask" / "input1.bin")
    with pytest.raises(DataError, match=f"{SEQ * 4} bytes, expected {SEQ * 8}"):
        read_sample_files([tmp_path / n for n in ("input_ids", "segment_ids", "input_mask")], seq_len=SEQ)


@pytest.mark.parametrize("folder", [".", "a", "a/", "./a", "/x/y", "a//b"])
def test_path_prefix_spells_paths_as_pathlib_does(folder):
    assert path_prefix(folder) + "input1.bin" == str(Path(folder) / "input1.bin")
