"""Peak memory of preprocessing, inference and postprocessing at several input sizes (issue 5: streaming).

    python tools/stream_memory.py --sizes 50000,200000 --work /tmp/stream_mem

Each size gets a TSV made by repeating the source TSV's sentences (default ../shared/glue_dir/SST-2/dev.tsv),
preprocessed with the source model's vocab.txt, then run through `infer` on the CPU with a tiny random
checkpoint of the same vocabulary size (the network's size does not change what grows with the input), then
scored. Every stage runs as its own process, the way a user runs it; its peak resident set size is read from
the kernel (wait4's ru_maxrss). Prints one table; the last column is MiB per 100,000 extra sentences.
--code_root runs another checkout of the package (e.g. an older commit) for a side-by-side comparison.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def make_tsv(source: Path, path: Path, count: int) -> None:
    with open(source, encoding="utf-8") as handle:
        header, *rows = [line.rstrip("\n") for line in handle if line.strip()]
    with open(path, "w", encoding="utf-8") as out:
        out.write(header + "\n")
        for i in range(count):
            out.write(rows[i % len(rows)] + "\n")


def vocab_size(vocab: Path) -> int:
    with open(vocab, encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def measure_stage(args, code_root: Path, cwd: Path) -> tuple[float, float, str]:
    """(peak RSS MiB, wall s, stdout) of `python -m tinybert_infer ARGS`. A fresh helper process runs and reaps
    the stage, so the helper's RUSAGE_CHILDREN peak is this stage's alone."""
    helper = (
        "import resource, subprocess, sys, time, os\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "w = time.perf_counter() - t\n"
        "sys.stdout.write(p.stdout)\n"
        "sys.stderr.write(p.stderr)\n"
        "print(f'@@peak {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {w}')\n"
        "sys.exit(p.returncode)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(code_root), TINYBERT_PROGRESS="0")
    proc = subprocess.run([sys.executable, "-c", helper, sys.executable, "-m", "tinybert_infer", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    peak_kib, wall = re.search(r"^@@peak (\d+) ([\d.]+)$", proc.stdout, re.M).groups()
    return int(peak_kib) / 1024.0, float(wall), proc.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tinybert_stream_memory"))
    parser.add_argument("--tsv", type=Path, default=SHARED / "glue_dir" / "SST-2" / "dev.tsv")
    parser.add_argument("--vocab", type=Path, default=SHARED / "SST-2_model" / "vocab.txt")
    parser.add_argument("--batchsize", type=int, default=64)
    parser.add_argument("--code_root", type=Path, default=ROOT, help="checkout whose tinybert_infer is measured")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    sys.path.insert(0, str(ROOT))
    from tinybert_infer.models.synthetic import write_random_checkpoint

    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.work / "tiny_model"
    if not checkpoint.is_dir():
        write_random_checkpoint(checkpoint, vocab_size=vocab_size(args.vocab), seed=0)
    rows = []
    for size in sizes:
        run_dir = args.work / f"n{size}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir()
        make_tsv(args.tsv, run_dir / "data.tsv", size)
        pre = measure_stage(["preprocess", "--tsv", "data.tsv", "--vocab", args.vocab, "--output_dir", "bert_bin"],
                            args.code_root, run_dir)
        inputs = ",".join(f"bert_bin/{n}" for n in ("input_ids", "segment_ids", "input_mask"))
        inf = measure_stage(["infer", "--backend", "torch", "--model_dir", checkpoint, "--threads", "1",
                             "--batchsize", args.batchsize, "--outfmt", "TXT", "--input", inputs,
                             "--output", "result", "--output_dirname", "run"], args.code_root, run_dir)
        post = measure_stage(["postprocess", "--result_dir", "result/run", "--bin_dir", "bert_bin"],
                             args.code_root, run_dir)
        acc = re.search(r"^acc:\S+", post[2], re.M)
        rows.append((size, pre, inf, post, acc.group(0) if acc else "?"))
        print(f"{size}: preprocess {pre[0]:.0f} MiB {pre[1]:.0f}s, infer {inf[0]:.0f} MiB {inf[1]:.0f}s, "
              f"postprocess {post[0]:.0f} MiB {post[1]:.0f}s", flush=True)
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)

    print(f"\npeak RSS (MiB) per stage, code: {args.code_root}")
    print("| sentences | preprocess | infer (torch, bs%d) | postprocess | wall s (pre/infer/post) |" % args.batchsize)
    print("|---|---|---|---|---|")
    for size, pre, inf, post, acc in rows:
        print(f"| {size:,} | {pre[0]:.0f} | {inf[0]:.0f} | {post[0]:.0f} | "
              f"{pre[1]:.0f} / {inf[1]:.0f} / {post[1]:.0f} |")
    if len(rows) >= 2:
        (n0, *a), (n1, *b) = rows[0], rows[-1]
        per = 100000.0 / (n1 - n0)
        growth = [(b[i][0] - a[i][0]) * per for i in range(3)]
        print(f"growth per 100,000 more sentences (MiB): preprocess {growth[0]:+.1f}, infer {growth[1]:+.1f}, "
              f"postprocess {growth[2]:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
