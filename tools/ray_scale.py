"""Corpus-scale scoring: `score --engine local` vs `score --engine ray` on the same sharded corpus (issue 11).

    python tools/ray_scale.py --sizes 100000,1000000 --shards 10 --work /tmp/ray_scale \
        [--model_dir ../shared/SST-2_model --model TinyBERT_sim_dyn.onnx] [--engines local,ray] [--precision bf16]

Each size gets a corpus of SST-2 dev sentences repeated (default ../shared/glue_dir/SST-2/dev.tsv), split into
--shards files. Each engine runs as its own process, the way a user runs it. Reported per run: sentences/s
(from the run's summary: rows / wall time of the scoring, Ray start-up excluded; and end to end, process
start to exit), the driver's peak RSS, and the peak RSS of each Ray scoring actor (ray::MapWorker processes,
sampled every 0.2 s with psutil) and of Ray's own processes together (raylet, gcs_server, agents: sampled
sum), and the CPU seconds each kind of process used (driver, actors, Ray's processes, other Ray workers: read
tasks), per 1,000 sentences: where the machine's time goes. --repeats runs the engines interleaved (local, ray,
local, ray, ...) so load from other work hits both alike. Prints one markdown table, plus ray/local ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
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
    if "default_worker.py" in cmd or name.startswith("ray::"):
        return "worker"  # read tasks and idle pooled workers
    if any(k in cmd for k in ("raylet", "gcs_server", "ray/dashboard", "ray/_private", "log_monitor",
                              "runtime_env")):
        return "ray"
    return ""


def _cpu_seconds(proc) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def run_engine(engine: str, corpus: Path, args, cwd: Path) -> dict:
    cmd = [sys.executable, "-m", "tinybert_infer", "score", "--engine", engine.split(":")[0], "--tsv", str(corpus),
           "--model_dir", str(args.model_dir), "--output", str(cwd / "result")]
    if args.model:
        cmd += ["--model", str(args.model)]
    if args.precision:
        cmd += ["--precision", args.precision, "--data_dir", str(args.source.parent)]
    if engine.startswith("ray:"):
        cmd += ["--cpus_per_actor", engine.split(":", 1)[1]]
    if engine.startswith("ray") and args.extra:
        cmd += args.extra.split()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TINYBERT_PROGRESS="0")
    env.pop("RAY_ADDRESS", None)
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver_peak, actor_peak, ray_peak = 0, {}, 0
    cpu = {}  # pid -> (kind, last CPU seconds seen): a process's total is its last sample
    series = []  # (time, {kind: CPU seconds so far}): the steady state is the run's middle half
    kinds: dict = {}
    while proc.poll() is None:
        try:
            driver_peak = max(driver_peak, proc.memory_info().rss)
            cpu[proc.pid] = ("driver", _cpu_seconds(proc))
        except psutil.NoSuchProcess:
            break
        ray_sum = 0
        try:  # this run's processes only (a local Ray's are the driver's descendants), not other jobs' Rays
            family = proc.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for p in family:
            # Ray's own processes keep their kind; a worker's changes (ray::IDLE -> ray::MapWorker) as it is used
            kind = kinds.get(p.pid) or _is_ray_process(p)
            if not kind:
                continue
            if kind == "ray":
                kinds[p.pid] = kind
            try:
                rss = p.memory_info().rss
                cpu[p.pid] = (kind, _cpu_seconds(p))
            except psutil.NoSuchProcess:
                continue
            if kind == "actor":
                actor_peak[p.pid] = max(actor_peak.get(p.pid, 0), rss)
            elif kind == "ray":
                ray_sum += rss
        ray_peak = max(ray_peak, ray_sum)
        totals: dict = {}
        for kind, seconds in cpu.values():
            totals[kind] = totals.get(kind, 0.0) + seconds
        series.append((time.perf_counter(), totals))
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
    cpu_s = {}
    for kind, seconds in cpu.values():
        cpu_s[kind] = cpu_s.get(kind, 0.0) + seconds
    per_k = {k: round(v * 1000 / summary["sentences"], 2) for k, v in sorted(cpu_s.items())}
    steady = {}
    if len(series) > 8:  # CPU used per second of wall time by each kind, from 40 % to 90 % of the run
        (t0, a), (t1, b) = series[int(len(series) * 0.4)], series[int(len(series) * 0.9)]
        steady = {k: round((b.get(k, 0.0) - a.get(k, 0.0)) / (t1 - t0), 2) for k in sorted(b)}
    return {"engine": engine.split(":")[0], "spec": engine, "plan": plan.get("label"), "sentences": summary["sentences"],
            "throughput": summary["throughput"],
            "end_to_end": summary["sentences"] / wall, "wall_s": wall, "driver_mib": driver_peak / mib,
            "actor_mib": sorted(round(v / mib) for v in actor_peak.values()), "ray_mib": ray_peak / mib,
            "actors": (summary.get("ray") or {}).get("actors"), "accuracy": summary.get("accuracy"),
            "cpu_s_per_1000": per_k, "steady_cpus": steady, "ray": summary.get("ray"), "local": summary.get("local")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--engines", default="local,ray",
                        help="comma-separated: local, ray (score's defaults), ray:N (--cpus_per_actor N)")
    parser.add_argument("--repeats", type=int, default=1, help="run the engines this many times, interleaved")
    parser.add_argument("--extra", default="", help="more score arguments for the ray runs, e.g. '--chunk_rows 4096'")
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
        for _ in range(args.repeats):
            for engine in args.engines.split(","):
                results.append(run_engine(engine, corpus, args, args.work))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        shutil.rmtree(corpus)
    print("| sentences | engine | actors x CPUs | sentences/s (scoring) | end to end | wall s | driver peak MiB | "
          "actor peak MiB | Ray processes MiB | CPU s per 1,000 sentences | CPUs busy, middle of the run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        shape = f"{r['actors']} x {r['ray']['cpus_per_actor']}" if r["ray"] else "-"  # actors x CPUs each
        cpu = ", ".join(f"{k} {v}" for k, v in r["cpu_s_per_1000"].items())
        steady = ", ".join(f"{k} {v}" for k, v in r["steady_cpus"].items())
        print(f"| {r['sentences']:,} | {r['engine']} | {shape} | {r['throughput']:.0f} | "
              f"{r['end_to_end']:.0f} | {r['wall_s']:.0f} | {r['driver_mib']:.0f} | "
              f"{', '.join(map(str, r['actor_mib'])) or '-'} | {r['ray_mib']:.0f} | {cpu} | {steady} |")
    for n in sorted({r["sentences"] for r in results}):
        specs = {r["spec"]: [x for x in results if x["sentences"] == n and x["spec"] == r["spec"]] for r in results
                 if r["sentences"] == n}
        mean = {spec: {k: statistics.mean(r[k] for r in runs) for k in ("throughput", "end_to_end")}
                for spec, runs in specs.items()}
        if "local" not in mean:
            continue
        for spec in (s for s in specs if s != "local"):
            print(f"{n:,} sentences: {spec}/local = {mean[spec]['throughput'] / mean['local']['throughput']:.2f} "
                  f"(scoring), {mean[spec]['end_to_end'] / mean['local']['end_to_end']:.2f} (end to end); "
                  f"means of {len(specs['local'])} local and {len(specs[spec])} {spec} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
