"""Corpus-scale scoring: `score --engine local` vs `score --engine ray` on the same sharded corpus (issue 11).

    python tools/ray_scale.py --sizes 100000,1000000 --shards 10 --work /tmp/ray_scale \
        [--model_dir ../shared/SST-2_model --model TinyBERT_sim_dyn.onnx] [--engines local,ray] [--precision bf16]

Each size gets a corpus of SST-2 dev sentences repeated (default ../shared/glue_dir/SST-2/dev.tsv), split into
--shards files. Each engine runs as its own process, the way a user runs it. Reported per run: sentences/s
(from the run's summary: rows / wall time of the scoring, Ray start-up excluded; and end to end, process
start to exit), the driver's peak RSS, and the peak RSS of each Ray scoring actor (ray::MapWorker processes,
sampled every 0.2 s with psutil) and of Ray's own processes together (raylet, gcs_server, agents: sampled
sum). Prints one markdown table, plus ray/local ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def make_corpus(source: Path, folder: Path, count: int, shards: int) -> Path:
    with open(source, encoding="utf-8") as handle:
        header, *rows = [line.rstrip("\n") for line in handle if line.strip()]
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-count // shards)
    written = 0
    for n in range(shards):
        with open(folder / f"part-{n:03d}.tsv", "w", encoding="utf-8") as out:
            out.write(header + "\n")
            for i in range(written, min(count, written + per)):
                out.write(rows[i % len(rows)] + "\n")
        written = min(count, written + per)
    return folder


def _is_ray_process(proc) -> str:
    """'actor' for a scoring actor, 'ray' for Ray's own processes, '' otherwise."""
    try:
        cmd = " ".join(proc.cmdline())
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""
    if "MapWorker" in cmd or "MapWorker" in name:
        return "actor"
    if any(k in cmd for k in ("raylet", "gcs_server", "ray/dashboard", "ray/_private", "default_worker.py",
                              "log_monitor", "runtime_env")):
        return "ray"
    return ""


def run_engine(engine: str, corpus: Path, args, cwd: Path) -> dict:
    cmd = [sys.executable, "-m", "tinybert_infer", "score", "--engine", engine, "--tsv", str(corpus),
           "--model_dir", str(args.model_dir), "--output", str(cwd / "result")]
    if args.model:
        cmd += ["--model", str(args.model)]
    if args.precision:
        cmd += ["--precision", args.precision, "--data_dir", str(args.source.parent)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TINYBERT_PROGRESS="0")
    env.pop("RAY_ADDRESS", None)
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver_peak, actor_peak, ray_peak = 0, {}, 0
    while proc.poll() is None:
        try:
            driver_peak = max(driver_peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        ray_sum = 0
        for p in psutil.process_iter():
            kind = _is_ray_process(p) if p.pid != proc.pid else ""
            try:
                rss = p.memory_info().rss if kind else 0
            except psutil.NoSuchProcess:
                continue
            if kind == "actor":
                actor_peak[p.pid] = max(actor_peak.get(p.pid, 0), rss)
            elif kind == "ray":
                ray_sum += rss
        ray_peak = max(ray_peak, ray_sum)
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    name = re.search(r"^result folder: (\S+)$", out, re.M).group(1)
    summary = json.loads((cwd / "result" / f"{name}_summary.json").read_text())
    shutil.rmtree(cwd / "result" / name)  # keep the disk clean; the summary stays
    mib = 1 << 20
    plan = summary["plan"].get("run_plan") or {}
    return {"engine": engine, "plan": plan.get("label"), "sentences": summary["sentences"], "throughput": summary["throughput"],
            "end_to_end": summary["sentences"] / wall, "wall_s": wall, "driver_mib": driver_peak / mib,
            "actor_mib": sorted(round(v / mib) for v in actor_peak.values()), "ray_mib": ray_peak / mib,
            "actors": (summary.get("ray") or {}).get("actors"), "accuracy": summary.get("accuracy")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--source", type=Path, default=SHARED / "glue_dir" / "SST-2" / "dev.tsv")
    parser.add_argument("--model_dir", type=Path, default=SHARED / "SST-2_model")
    parser.add_argument("--model", type=Path, default=None, help="dynamic ONNX (default: exported into --work)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ray_scale"))
    parser.add_argument("--precision", default=None,
                        help="score --precision (the run planner's plan; default: score's exact fp32 ONNX Runtime)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.model is None:
        args.model = args.work / "TinyBERT_sim_dyn.onnx"
        if not args.model.is_file():
            subprocess.run([sys.executable, "-m", "tinybert_infer", "export", "--dynamic", "--model_dir",
                            str(args.model_dir), "--output_dir", str(args.work), "--validate_count", "4"],
                           check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True)
    args.model, args.model_dir = args.model.resolve(), args.model_dir.resolve()
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        corpus = make_corpus(args.source, args.work / f"corpus_{size}", size, args.shards)
        for engine in args.engines.split(","):
            results.append(run_engine(engine, corpus, args, args.work))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        shutil.rmtree(corpus)
    print("| sentences | engine | actors | sentences/s (scoring) | end to end | wall s | driver peak MiB | "
          "actor peak MiB | Ray processes MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['sentences']:,} | {r['engine']} | {r['actors'] or '-'} | {r['throughput']:.0f} | "
              f"{r['end_to_end']:.0f} | {r['wall_s']:.0f} | {r['driver_mib']:.0f} | "
              f"{', '.join(map(str, r['actor_mib'])) or '-'} | {r['ray_mib']:.0f} |")
    by = {(r["sentences"], r["engine"]): r for r in results}
    for (n, engine), r in by.items():
        if engine == "ray" and (n, "local") in by:
            print(f"{n:,} sentences: ray/local = {r['throughput'] / by[(n, 'local')]['throughput']:.2f} (scoring), "
                  f"{r['end_to_end'] / by[(n, 'local')]['end_to_end']:.2f} (end to end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
