"""--engine local: this host, one chunk at a time (memory does not grow with the corpus)."""

from __future__ import annotations

from typing import Sequence

from tinybert_infer.score.corpus import Shard, iter_chunks
from tinybert_infer.score.output import OrderedWriter, result_columns


def run_local(shards: Sequence[Shard], scorer, writer: OrderedWriter, labels: Sequence[str], *, bar) -> dict:
    chunk_rows = scorer.plan["chunk_rows"]
    for shard_id, shard in enumerate(shards):
        for chunk in iter_chunks(shard, shard_id, labels, chunk_rows):
            writer.add(result_columns(chunk, scorer.score_batch(chunk["text"])))
            bar.update(len(chunk["index"]))
    return {"threads": scorer.plan["threads"]}
