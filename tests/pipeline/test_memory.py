"""Streaming stages: their memory does not grow with the number of sentences (preprocess, infer, score local).

Python-level peaks (tracemalloc; numpy's buffers are traced too) for N and 4N sentences after a warm-up run (first
calls build tokenizers, kernels and caches once): a stage that kept every sample (a list of arrays, the whole TSV,
every output record) would grow about 4x. Each measurement runs in a fresh interpreter, as users run the stages:
inside pytest, path strings made during a run were seen retained (about 2.4 KB per sample) where a plain
interpreter frees them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, SENTENCES, clean_environ, write_tsv

SMALL, LARGE = 200, 800
SLACK = 128 << 10  # bytes: per-batch timings and the like; one int64 input row per sample alone is 1.5 KB

PROBE = r"""
import json, sys, tracemalloc
from pathlib import Path
import tinybert_infer.data.features as data
from tinybert_infer.backends import make_backend
from tinybert_infer.data.features import preprocess
from tinybert_infer.run.inference import run_files
from tinybert_infer.layout import INPUT_NAMES
from tinybert_infer.score.command import score_corpus

root, ckpt, static, dynamic = (Path(a) for a in sys.argv[1:5])
data.CHUNK = 100  # sentences tokenised together: both sizes span many chunks
backend = make_backend("onnxruntime", onnx_path=static, batch_size=4)

def peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

peaks = {}
for n in sys.argv[5:]:
    tsv, bins = root / f"corpus_{n}.tsv", root / f"bert_bin_{n}"
    peaks[n] = {
        "preprocess": peak(lambda: preprocess(tsv, ckpt / "vocab.txt", bins, show_progress=False)),
        "infer": peak(lambda: run_files(backend, [bins / x for x in INPUT_NAMES], root / f"result_{n}",
                                        show_progress=False)),
        "score": peak(lambda: score_corpus(tsv, backend="onnxruntime", model=dynamic, model_dir=ckpt, chunk_rows=100,
                                           output_root=root / f"scored_{n}", show_progress=False)),
    }
print(json.dumps(peaks))
"""


def test_stage_memory_is_flat_in_the_sentence_count(tmp_path, tiny_checkpoint, tiny_exports):
    sizes = (len(SENTENCES), SMALL, LARGE)  # the first one warms up
    for n in sizes:
        write_tsv(tmp_path / f"corpus_{n}.tsv", [SENTENCES[i % len(SENTENCES)] for i in range(n)])
    # ONNX Runtime, not PyTorch: the stages' own buffers are the subject, and the probe starts without torch
    graphs = (tiny_exports["static"].sim_path, tiny_exports["dynamic"].sim_path)
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path), str(tiny_checkpoint), *map(str, graphs),
                           *map(str, sizes)],
                          env=dict(clean_environ(), PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peaks = json.loads(proc.stdout.strip().splitlines()[-1])
    for stage in ("preprocess", "infer", "score"):
        small, large = peaks[str(SMALL)][stage], peaks[str(LARGE)][stage]
        assert large < 1.3 * small + SLACK, f"{stage}: peak bytes {small} for {SMALL} sentences, {large} for {LARGE}"
