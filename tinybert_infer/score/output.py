"""A score run's result folder, all or nothing, and the writer that puts rows in input order.

    result/<YYYY_MM_DD-HH_MM_SS or --output_dirname>/predictions.tsv (or .parquet)
    result/<same>/manifest.json        inputs, rows, output file checksum: written after the rows are checked
    result/<same>_summary.json         written last (results.mark_complete), then .incomplete goes

The folder is claimed by results.create_result_dir (never an existing one; `.incomplete` marker from the
start). Rows are written into <folder>/.staging/; rows that arrive ahead of their turn (Ray delivers blocks in
any order) are spilled there as .npz runs and written when their turn comes. finish() checks that every shard
arrived whole (rows written == rows read, each (shard, index) exactly once), then moves the table into place,
writes the manifest and the summary. A failed or interrupted run removes the folder; after kill -9 the marker
stays and postprocessing refuses the folder.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tinybert_infer.errors import ResultError
from tinybert_infer.fsutil import discard_dir, file_sha256, write_json_atomic
from tinybert_infer.run.results import check_complete, create_result_dir, mark_complete, metrics_path
from tinybert_infer.score.corpus import Shard

FORMATS = ("tsv", "parquet")
STAGING = ".staging"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "tinybert-score/1"
PARQUET_ROW_GROUP = 65536


def table_name(fmt: str) -> str:
    return f"predictions.{fmt}"


def column_names(num_labels: int, *, multi_shard: bool, labelled: bool) -> list:
    return ((["shard"] if multi_shard else []) + ["index"] + (["label"] if labelled else []) + ["prediction"]
            + [f"logit_{k}" for k in range(num_labels)])


class _TsvSink:
    def __init__(self, path: Path, columns: Sequence[str], shard_names: Sequence[str]):
        self.path, self.names = path, list(shard_names)
        self.columns = list(columns)
        self.handle = open(path, "xb")
        self.digest = hashlib.sha256()
        self._put("\t".join(self.columns) + "\n")

    def _put(self, text: str) -> None:
        data = text.encode("utf-8")
        self.digest.update(data)
        self.handle.write(data)
        self.handle.flush()  # one flush per chunk: a run's progress is visible on disk

    def write(self, run: dict) -> None:
        fields = []
        if "shard" in self.columns:
            fields.append([self.names[int(run["shard"][0])]] * len(run["index"]))
        fields.append(run["index"].astype(str))
        if "label" in self.columns:
            fields.append(run["label"].astype(str))
        fields.append(run["prediction"].astype(str))
        fields.extend(np.char.mod("%.6f", run["logits"][:, k]) for k in range(run["logits"].shape[1]))
        self._put("".join("\t".join(row) + "\n" for row in zip(*fields)))

    def close(self) -> None:
        self.handle.close()


class _ParquetSink:
    def __init__(self, path: Path, columns: Sequence[str], shard_names: Sequence[str]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa, self.path, self.names, self.columns = pa, path, list(shard_names), list(columns)
        types = {"shard": pa.string(), "index": pa.int64(), "label": pa.int64(), "prediction": pa.int64()}
        self.schema = pa.schema([(c, types.get(c, pa.float32())) for c in self.columns])
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.pending, self.pending_rows = [], 0

    def write(self, run: dict) -> None:
        n = len(run["index"])
        data = {"index": run["index"], "prediction": run["prediction"]}
        if "shard" in self.columns:
            data["shard"] = [self.names[int(run["shard"][0])]] * n
        if "label" in self.columns:
            data["label"] = run["label"]
        for k in range(run["logits"].shape[1]):
            data[f"logit_{k}"] = run["logits"][:, k]
        self.pending.append(self.pa.table({c: data[c] for c in self.columns}, schema=self.schema))
        self.pending_rows += n
        if self.pending_rows >= PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(self.pa.concat_tables(self.pending), row_group_size=PARQUET_ROW_GROUP)
            self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self.writer.close()


def split_runs(cols: dict) -> list:
    """A block of result rows -> runs of consecutive rows of one shard (a Ray block may hold several)."""
    shard, index = np.asarray(cols["shard"]), np.asarray(cols["index"])
    if len(index) == 0:
        return []
    breaks = np.flatnonzero((np.diff(shard) != 0) | (np.diff(index) != 1)) + 1
    bounds = [0, *breaks.tolist(), len(index)]
    return [{k: np.asarray(v)[a:b] for k, v in cols.items()} for a, b in zip(bounds[:-1], bounds[1:])]


def result_columns(chunk: dict, logits: np.ndarray) -> dict:
    """What a scored chunk carries to the writer: identity, label, prediction, logits (no text)."""
    return {"shard": chunk["shard"], "index": chunk["index"], "label": chunk["label"], "last": chunk["last"],
            "prediction": logits.argmax(axis=1).astype(np.int64), "logits": logits}


class OrderedWriter:
    """Writes runs in (shard, index) order, whatever order they arrive in; drops exact repeats (a retried
    block delivered twice) and counts them; knows each shard's row count from its `last` row."""

    def __init__(self, sink, stage: Path, shards: Sequence[Shard], num_labels: int):
        self.sink, self.stage, self.shards = sink, stage, list(shards)
        self.shard_rows: list = [None] * len(shards)
        self.position = (0, 0)           # next (shard, index) to write
        self.spilled: list = []          # heap of (shard, start, stop, path)
        self.spills = 0
        self.rows_written = 0
        self.duplicates = 0
        self.confusion = np.zeros((num_labels, num_labels), dtype=np.int64)

    def add(self, cols: dict) -> None:
        if "logits" not in cols:  # from Ray: logit_k columns
            k = self.confusion.shape[0]
            cols = dict(cols, logits=np.stack([cols.pop(f"logit_{j}") for j in range(k)], axis=1))
        for run in split_runs(cols):
            self._add_run(run)

    def _add_run(self, run: dict) -> None:
        shard, start = int(run["shard"][0]), int(run["index"][0])
        stop = start + len(run["index"])
        if run["last"][-1]:
            if self.shard_rows[shard] not in (None, stop):
                raise ResultError(f"{self.shards[shard].path}: read twice with different row counts "
                                  f"({self.shard_rows[shard]} and {stop})")
            self.shard_rows[shard] = stop
        if (shard, stop) <= self.position:
            self.duplicates += stop - start
        elif (shard, start) <= self.position:
            self._write(run)
        else:
            path = self.stage / f"run-{shard:06d}-{start:012d}-{self.spills}.npz"
            np.savez(path, **run)
            self.spills += 1
            heapq.heappush(self.spilled, (shard, start, stop, str(path)))
            return
        self._drain()

    def _write(self, run: dict) -> None:
        shard, first = self.position
        skip = first - int(run["index"][0])  # rows already written: a repeat's overlap
        if skip:
            self.duplicates += skip
            run = {k: v[skip:] for k, v in run.items()}
        self.sink.write(run)
        n = len(run["index"])
        self.rows_written += n
        if run["label"].size and run["label"][0] >= 0:
            np.add.at(self.confusion, (run["label"], run["prediction"]), 1)
        self.position = (shard, first + n)
        while self.position[0] < len(self.shards) and self.shard_rows[self.position[0]] == self.position[1]:
            self.position = (self.position[0] + 1, 0)

    def _drain(self) -> None:
        while self.spilled and self.spilled[0][:2] <= self.position:
            shard, start, stop, path = heapq.heappop(self.spilled)
            if (shard, stop) <= self.position:
                self.duplicates += stop - start
            else:
                with np.load(path, allow_pickle=False) as data:
                    self._write({k: data[k] for k in data.files})
            Path(path).unlink()

    def check_complete(self) -> None:
        """Every shard whole: rows written == rows read, each (shard, index) exactly once."""
        shard, index = self.position
        if shard < len(self.shards):
            what = f"rows from index {index} on" if self.shard_rows[shard] is None else \
                f"rows {index}..{self.shard_rows[shard] - 1}"
            raise ResultError(f"{self.shards[shard].path}: {what} never arrived; nothing was published")
        rows_read = sum(self.shard_rows)
        if self.rows_written != rows_read or self.spilled:
            raise ResultError(f"{self.rows_written} rows written but {rows_read} read; nothing was published")


class ScoreFolder:
    """with ScoreFolder(...) as out: out.writer.add(...) ...; out.publish(summary). Any exception removes it."""

    def __init__(self, root, shards: Sequence[Shard], *, fmt: str, num_labels: int, labelled: bool,
                 output_dirname: Optional[str] = None):
        if fmt not in FORMATS:
            raise ResultError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
        self.root, self.shards, self.fmt = Path(root), list(shards), fmt
        self.num_labels, self.labelled, self.output_dirname = num_labels, labelled, output_dirname
        self.columns = column_names(num_labels, multi_shard=len(self.shards) > 1, labelled=labelled)

    def __enter__(self):
        self.dir = create_result_dir(self.root, self.output_dirname)
        try:
            self.stage = self.dir / STAGING
            self.stage.mkdir()
            sink_type = _TsvSink if self.fmt == "tsv" else _ParquetSink
            self.sink = sink_type(self.stage / table_name(self.fmt), self.columns, [s.name for s in self.shards])
            self.writer = OrderedWriter(self.sink, self.stage, self.shards, self.num_labels)
        except BaseException:
            discard_dir(self.dir)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            if not getattr(self.sink, "closed", False):
                try:
                    self.sink.close()
                except Exception:
                    pass
            discard_dir(self.dir)
        return False

    def accuracy(self) -> Optional[float]:
        total = int(self.writer.confusion.sum())
        return float(np.trace(self.writer.confusion)) / total if self.labelled and total else None

    def publish(self, summary: dict) -> dict:
        """Check the rows, move the table into place, then the manifest, then the summary (complete)."""
        self.writer.check_complete()
        self.sink.close()
        self.sink.closed = True
        table = self.dir / table_name(self.fmt)
        (self.stage / table.name).rename(table)
        shutil.rmtree(self.stage)
        digest = self.sink.digest.hexdigest() if self.fmt == "tsv" else file_sha256(table)
        manifest = {
            "format": MANIFEST_FORMAT,
            "rows": self.writer.rows_written,
            "columns": self.columns,
            "labelled": self.labelled,
            "files": [{"name": table.name, "rows": self.writer.rows_written, "sha256": digest}],
            "shards": [{"shard": s.name, "path": s.path, "rows": n, "bytes": s.size}
                       for s, n in zip(self.shards, self.writer.shard_rows)],
        }
        write_json_atomic(self.dir / MANIFEST, manifest)
        labelled_counts = {"correct": int(np.trace(self.writer.confusion)),
                           "accuracy": self.accuracy(),
                           "confusion_matrix": self.writer.confusion.tolist()} if self.labelled else {}
        summary = dict(summary, sentences=self.writer.rows_written, shards=len(self.shards),
                       shard_rows=list(self.writer.shard_rows), duplicate_rows_dropped=self.writer.duplicates,
                       runs_spilled=self.writer.spills, format=self.fmt, files=[table.name], **labelled_counts)
        mark_complete(self.dir, summary)
        return summary


# ---------------------------------------------------------------- reading a score folder (postprocess)
def is_score_folder(folder) -> bool:
    folder = Path(folder)
    return (folder / STAGING).is_dir() or any((folder / table_name(f)).is_file() for f in FORMATS)


def read_table(folder) -> tuple:
    """(manifest, {column: array}) of a complete score folder; refuses an incomplete or damaged one."""
    folder = Path(folder)
    check_complete(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultError(f"{folder / MANIFEST}: missing or unreadable score manifest ({exc})") from None
    entry = manifest["files"][0]
    path = folder / entry["name"]
    if not path.is_file() or file_sha256(path) != entry["sha256"]:
        raise ResultError(f"{path}: missing, or not the file the manifest describes (checksum differs)")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        cols = {c: table.column(c).to_numpy() for c in table.column_names if c != "shard"}
    else:
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().rstrip("\n").split("\t")
            wanted = [c for c in header if c != "shard"]
            data = np.loadtxt(handle, delimiter="\t", usecols=[header.index(c) for c in wanted], ndmin=2,
                              dtype=np.float64)
        cols = {c: data[:, i] for i, c in enumerate(wanted)}
    if len(cols["index"]) != manifest["rows"]:
        raise ResultError(f"{path}: {len(cols['index'])} rows, the manifest says {manifest['rows']}")
    return manifest, cols


def evaluate_score_folder(folder) -> Optional[dict]:
    """Accuracy report of a labelled score folder (metrics.score), written to <folder>_metrics.json."""
    from tinybert_infer.eval.metrics import score

    manifest, cols = read_table(folder)
    if "label" not in cols:
        return None
    width = sum(1 for c in manifest["columns"] if c.startswith("logit_"))
    metrics = score(cols["label"].astype(np.int64), cols["prediction"].astype(np.int64), width)
    metrics["result_dir"] = str(folder)
    write_json_atomic(metrics_path(folder), metrics)
    return metrics
