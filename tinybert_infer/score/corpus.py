"""The corpus: which shards PATH names (in name order), and each shard read strictly in chunks.

A chunk is a run of consecutive rows of one shard; its rows carry (shard id, 0-based index), and the last
chunk of a shard says so, which is how a writer knows how many rows the shard had without a second pass.
Both engines read through iter_chunks, so a local run and a Ray run see the same chunks.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterator, List, Sequence

import numpy as np

from tinybert_infer.errors import DataError
from tinybert_infer.data.tsv import TsvReader

DEFAULT_CHUNK_ROWS = 1024  # rows per chunk (= per Ray block): tokenised and scored together
SHARD_SUFFIXES = (".tsv",)


@dataclass(frozen=True)
class Shard:
    name: str   # what the `shard` column holds: the path relative to the shards' common folder
    path: str   # absolute path, as read by the engine (on a cluster: visible at that path on every node)

    @property
    def size(self) -> int:
        return os.path.getsize(self.path)


def _named(paths: Sequence[Path]) -> List[Shard]:
    paths = sorted({p.resolve() for p in paths})
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    shards = [Shard(str(p.relative_to(common)), str(p)) for p in paths]
    return sorted(shards, key=lambda s: s.name)


def resolve_shards(spec) -> List[Shard]:
    """One TSV file, a folder (its *.tsv files, not recursive) or a glob pattern; shards in name order."""
    text = str(spec)
    path = Path(text)
    if path.is_file():
        return _named([path])
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SHARD_SUFFIXES]
        if not found:
            raise DataError(f"{path}: folder holds no .tsv shards")
        return _named(found)
    if glob.has_magic(text):
        found = [Path(p) for p in glob.glob(text) if Path(p).is_file()]
        if not found:
            raise DataError(f"{text}: no file matches this pattern")
        return _named(found)
    raise DataError(f"{path}: TSV file not found")


def label_set(num_labels: int) -> tuple:
    return tuple(str(i) for i in range(num_labels))


def shard_is_labelled(shard: Shard, labels: Sequence[str]) -> bool:
    """Reads the header and first row only (a bad first row fails here, before anything runs)."""
    reader = TsvReader(shard.path, label_set=labels)
    next(iter(reader))
    return reader.columns.label is not None


def corpus_is_labelled(shards: Sequence[Shard], labels: Sequence[str]) -> bool:
    """All shards labelled, or none: a mix would give a label column with holes."""
    kinds = [shard_is_labelled(s, labels) for s in shards]
    if any(kinds) and not all(kinds):
        odd = shards[kinds.index(not kinds[0])]
        raise DataError(f"{odd.path}:1: header {'has' if kinds[0] is False else 'lacks'} a label column, "
                        f"unlike {shards[0].path}; give shards of one kind")
    return kinds[0]


def iter_chunks(shard: Shard, shard_id: int, labels: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS
                ) -> Iterator[dict]:
    """Columns per chunk: shard (int32), index (int64), text (object), label (int64, -1 when none) and
    last (bool, true on the shard's final row). Raises DataError naming the file and line on a bad row."""
    reader = TsvReader(shard.path, label_set=labels)
    rows = iter(reader)
    start, held = 0, None
    while True:
        chunk = list(islice(rows, chunk_rows))
        if held is not None:
            yield _columns(shard_id, held[0], held[1], last=not chunk)
        if not chunk:
            return
        held = (start, chunk)
        start += len(chunk)


def estimated_rows(shards: Sequence[Shard], first: Sequence[str], asked: int) -> int:
    """The corpus's rows: exact when the first shard's `first` texts (up to `asked`) were all of a one-shard
    corpus, else its bytes over the mean bytes of those rows (text, a tab, a label or index, a newline). For the
    planner's cost of setup against the job, which needs a size, not a count."""
    if len(shards) == 1 and len(first) < asked:
        return len(first)
    row_bytes = (sum(len(t.encode()) for t in first) / max(1, len(first))) + 4
    return max(len(first), int(sum(s.size() for s in shards) / row_bytes))


def first_texts(shard: Shard, count: int) -> list:
    """The shard's first `count` sentences (labels unread): what the planner times plans on."""
    return [ex.text for ex in islice(TsvReader(shard.path, label_set=None), count)]


def chunk_nbytes(shard: Shard, labels: Sequence[str], chunk_rows: int) -> int:
    """Bytes of the shard's first chunk as a pyarrow table: what Ray sizes blocks by."""
    import pyarrow as pa

    first = next(iter_chunks(shard, 0, labels, chunk_rows))
    first["text"] = first["text"].astype(str).tolist()
    return pa.table(first).nbytes


def chunk_keys(cols: dict, chunk_rows: int) -> list:
    """Row ranges [a, b) of a block that belong to one chunk (shard, index // chunk_rows): a block of Ray's
    may hold several chunks, and each is scored as the local engine scores it."""
    shard, index = np.asarray(cols["shard"]), np.asarray(cols["index"])
    key = shard.astype(np.int64) * (1 << 40) + index // chunk_rows
    breaks = np.flatnonzero(np.diff(key) != 0) + 1
    bounds = [0, *breaks.tolist(), len(index)]
    return list(zip(bounds[:-1], bounds[1:]))


def _columns(shard_id: int, start: int, examples, *, last: bool) -> dict:
    n = len(examples)
    flags = np.zeros(n, dtype=bool)
    flags[-1] = last
    return {
        "shard": np.full(n, shard_id, dtype=np.int32),
        "index": np.arange(start, start + n, dtype=np.int64),
        "text": np.array([ex.text for ex in examples], dtype=object),
        "label": np.array([int(ex.label) if ex.label is not None else -1 for ex in examples], dtype=np.int64),
        "last": flags,
    }
