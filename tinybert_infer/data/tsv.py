"""Strict, streaming reader for GLUE-format TSV files (SST-2 dev/train: sentence<TAB>label; test: index<TAB>sentence).

Quotes are literal (GLUE files are not CSV-quoted). A UTF-8 BOM, CRLF line endings and trailing blank lines
are accepted; anything else unusual is an error naming the file and line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from tinybert_infer.errors import DataError

BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class Example:
    line: int  # 1-based line number in the file, for messages
    text: str
    label: Optional[str]
    guid: Optional[str]  # the 'index' column of unlabelled GLUE files


@dataclass(frozen=True)
class Columns:
    text: int
    label: Optional[int]
    index: Optional[int]
    count: int


def parse_header(fields: Sequence[str], path) -> Columns:
    names = [f.strip().lower() for f in fields]
    if "sentence" not in names:
        raise DataError(f"{path}:1: no header line with a 'sentence' column (got {fields[0][:40]!r}...)")
    return Columns(
        text=names.index("sentence"),
        label=names.index("label") if "label" in names else None,
        index=names.index("index") if "index" in names else None,
        count=len(names),
    )


def _decode(raw: bytes, path, lineno: int) -> str:
    if b"\x00" in raw:
        raise DataError(f"{path}:{lineno}: NUL byte in line")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{lineno}: invalid UTF-8 ({exc.reason} at column {exc.start + 1})") from None


def _strip_eol(raw: bytes) -> bytes:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw


class TsvReader:
    """Iterates Examples; .sha256 holds the whole file's checksum once iteration has finished."""

    def __init__(self, path, label_set: Optional[Sequence[str]] = ("0", "1")):
        self.path = Path(path)
        self.label_set = None if label_set is None else tuple(label_set)
        self.columns: Optional[Columns] = None
        self.sha256: Optional[str] = None
        if not self.path.is_file():
            raise DataError(f"{self.path}: TSV file not found")

    def __iter__(self) -> Iterator[Example]:
        digest = hashlib.sha256()
        pending_blank = None  # line number of a blank line not (yet) known to be trailing
        rows = 0
        with open(self.path, "rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                digest.update(raw)
                if lineno == 1 and raw.startswith(BOM):
                    raw = raw[len(BOM):]
                elif lineno == 1 and raw.startswith(UTF16_BOMS):
                    raise DataError(f"{self.path}:1: UTF-16 encoded; save the file as UTF-8")
                text = _decode(_strip_eol(raw), self.path, lineno)
                if not text.strip():
                    if lineno == 1:
                        raise DataError(f"{self.path}:1: no header line (first line is blank)")
                    pending_blank = pending_blank or lineno
                    continue
                if pending_blank:
                    raise DataError(f"{self.path}:{pending_blank}: blank line inside the data")
                fields = text.split("\t")
                if self.columns is None:
                    self.columns = parse_header(fields, self.path)
                    continue
                yield self._example(fields, lineno)
                rows += 1
        if self.columns is None:
            raise DataError(f"{self.path}:1: empty file (no header line)")
        if rows == 0:
            raise DataError(f"{self.path}:2: no data rows after the header")
        self.sha256 = digest.hexdigest()

    def _example(self, fields, lineno) -> Example:
        cols = self.columns
        if len(fields) != cols.count:
            raise DataError(f"{self.path}:{lineno}: expected {cols.count} tab-separated columns, found {len(fields)}")
        label = None
        if cols.label is not None:
            label = fields[cols.label].strip()
            if self.label_set is not None and label not in self.label_set:
                raise DataError(
                    f"{self.path}:{lineno}: label {label!r} not in the label set {{{', '.join(self.label_set)}}}"
                )
        guid = fields[cols.index].strip() if cols.index is not None else None
        return Example(lineno, fields[cols.text], label, guid)
