"""Stand-in for `python3 -m ais_bench` 0.0.2 (tests only).

An independent implementation of the documented behaviour (reference sections 1.1-1.6), deliberately not
sharing code with tinybert_infer: natural file order, files per batch from byte sizes, a short last batch
padded with copies of the chunk's first file, padded outputs skipped, `<input0 stem>_<k>.<fmt>` names,
`<output>/<ts>/` plus `<output>/<ts>_summary.json`, the printed performance summary. The "OM" written by the
stand-in atc is the ONNX file, run here with ONNX Runtime so the logits are real.
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np


def str2bool(value):
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError("Boolean value expected.")


def get_args():
    p = argparse.ArgumentParser()
    p.add_argument("--model", "-m", required=True)
    p.add_argument("--input", "-i", default=None)
    p.add_argument("--output", "-o", default=None)
    p.add_argument("--output_dirname", default=None)
    p.add_argument("--outfmt", default="BIN", choices=["NPY", "BIN", "TXT"])
    p.add_argument("--loop", "-l", type=int, default=1)
    p.add_argument("--debug", type=str2bool, default=False)
    p.add_argument("--device", "-d", default=0)
    p.add_argument("--dymBatch", type=int, default=0)
    p.add_argument("--dymHW", default=None)
    p.add_argument("--dymDims", default=None)
    p.add_argument("--dymShape", default=None)
    p.add_argument("--outputSize", default=None)
    p.add_argument("--auto_set_dymshape_mode", type=str2bool, default=False)
    p.add_argument("--auto_set_dymdims_mode", type=str2bool, default=False)
    p.add_argument("--batchsize", type=int, default=None)
    p.add_argument("--pure_data_type", default="zero", choices=["zero", "random"])
    p.add_argument("--profiler", type=str2bool, default=False)
    p.add_argument("--dump", type=str2bool, default=False)
    p.add_argument("--acl_json_path", default=None)
    p.add_argument("--output_batchsize_axis", type=int, default=0)
    p.add_argument("--run_mode", default="array", choices=["array", "files", "tensor", "full"])
    p.add_argument("--display_all_summary", type=str2bool, default=False)
    p.add_argument("--warmup_count", type=int, default=1)
    p.add_argument("--dymShape_range", default=None)
    args = p.parse_args()
    if args.output_dirname and not args.output:
        p.error("--output_dirname needs --output")
    return args


def record():
    log = os.environ.get("STUB_ARGV_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"tool": "ais_bench", "argv": sys.argv[1:]}) + "\n")


def natural_sorted(names):
    key = lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]
    return sorted(sorted(names), key=key)


def list_files(folder):
    names = [n for n in os.listdir(folder) if n.endswith((".bin", ".BIN", ".npy", ".NPY"))]
    return [os.path.join(folder, n) for n in natural_sorted(names)]


def file_bytes(path):
    if path.lower().endswith(".npy"):
        return np.load(path).nbytes
    return os.path.getsize(path)


def read_raw(path):
    if path.lower().endswith(".npy"):
        return np.load(path).tobytes()
    with open(path, "rb") as handle:
        return handle.read()


NP_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
            "tensor(float16)": np.float16}


def save(path, array, fmt):
    if fmt == "BIN":
        array.tofile(path)
    elif fmt == "NPY":
        np.save(path, array)
    else:
        rows = array.reshape(-1, array.shape[-1])
        spec = "%f" if array.dtype.kind == "f" else "%d"
        with open(path, "w") as handle:
            for row in rows:
                handle.write("".join((spec % v) + " " for v in row) + "\n")


def stats(times):
    if not times:
        return {"min": 0, "max": 0, "mean": 0, "median": 0, "percentile(99%)": 0, "count": 0}
    a = np.array(times)
    return {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()), "median": float(np.median(a)),
            "percentile(99%)": float(np.percentile(a, 99)), "count": len(times)}


def main():
    args = get_args()
    record()
    if os.environ.get("AIS_BENCH_STUB_FAIL"):
        print("[ERROR] acl init failed: device 0 not available (ret 507033)")
        return 1
    if not os.path.isfile(args.model):
        print(f"[ERROR] model path:{args.model} not exist")
        return 1
    import onnxruntime as ort

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shapes = [tuple(i.shape) for i in inputs]
    dtypes = [NP_TYPES[i.type] for i in inputs]
    tensor_bytes = [int(np.prod(s)) * np.dtype(t).itemsize for s, t in zip(shapes, dtypes)]
    batchsize = args.batchsize or shapes[0][0]

    if args.input is None:
        listing = None
        make = np.zeros if args.pure_data_type == "zero" else (lambda s, dtype: np.random.randint(0, 100, s).astype(dtype))
        batches = [[make(s, dtype=t) for s, t in zip(shapes, dtypes)]]
        chunk_files = [[None]]
        files_per_batch = 1
    else:
        dirs = args.input.split(",")
        if len(dirs) != len(inputs):
            print(f"[ERROR] inputs count {len(dirs)} not match model inputs {len(inputs)}")
            return 1
        listing = [list_files(d) for d in dirs]
        size0 = file_bytes(listing[0][0])
        files_per_batch = tensor_bytes[0] // size0
        if tensor_bytes[0] % size0:
            print(f"[ERROR] arg0 tensorsize: {tensor_bytes[0]} filesize: {size0} not match")
            return 1
        runcount = -(-len(listing[0]) // files_per_batch)
        print(f"[INFO] get filesperbatch files0 size:{size0} tensor0size:{tensor_bytes[0]} "
              f"filesperbatch:{files_per_batch} runcount:{runcount}")
        batches, chunk_files = [], []
        for r in range(runcount):
            idx = list(range(r * files_per_batch, min((r + 1) * files_per_batch, len(listing[0]))))
            chunk_files.append(idx + [None] * (files_per_batch - len(idx)))
            feeds = []
            for k, files in enumerate(listing):
                raw = b"".join(read_raw(files[i if i is not None else idx[0]]) for i in chunk_files[-1])
                if len(raw) != tensor_bytes[k]:
                    print(f"[ERROR] arg{k} tensorsize: {tensor_bytes[k]} filesize: {len(raw)} not match")
                    return 1
                feeds.append(np.frombuffer(raw, dtype=dtypes[k]).reshape(shapes[k]))
            batches.append(feeds)

    out_dir = None
    if args.output:
        name = args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S")
        out_dir = os.path.join(args.output, name)
        os.makedirs(out_dir, exist_ok=True)
        print(f"[INFO] output path:{out_dir}")

    def run(feeds):
        return session.run(None, {i.name: f for i, f in zip(inputs, feeds)})

    for _ in range(args.warmup_count):
        run(batches[0])
    times, filesinfo = [], {}
    for b, feeds in enumerate(batches):
        for _ in range(args.loop):
            start = time.perf_counter()
            results = run(feeds)
            times.append((time.perf_counter() - start) * 1000)
        if out_dir is None:
            continue
        for k, result in enumerate(results):
            parts = np.array_split(result, files_per_batch, axis=args.output_batchsize_axis)
            for slot, part in enumerate(parts):
                index = chunk_files[b][slot]
                if args.input is None:
                    stem = "pure_infer_data"
                elif index is None:
                    continue  # padding placeholder: nothing written
                else:
                    stem = os.path.basename(listing[0][index]).split(".")[0]
                path = os.path.join(out_dir, f"{stem}_{k}.{args.outfmt.lower()}")
                save(path, part, args.outfmt)
                if index is not None:
                    entry = filesinfo.setdefault(index, {"infiles": [l[index] for l in listing], "outfiles": []})
                    entry["outfiles"].append(path)

    npu = stats(times)
    throughput = 1000 * batchsize / npu["mean"] if npu["mean"] else 0
    summary = {"filesinfo": filesinfo, "args": sys.argv, "NPU_compute_time": npu, "H2D_latency": stats([0.01]),
               "D2H_latency": stats([0.01]), "throughput": throughput, "npu_compute_time_list": times,
               "pid": os.getpid()}
    if out_dir is not None:
        with open(out_dir.rstrip("/") + "_summary.json", "w") as handle:
            json.dump(summary, handle)
    fmt = lambda s: (f"min = {s['min']}, max = {s['max']}, mean = {s['mean']}, median = {s['median']}, "
                     f"percentile(99%) = {s['percentile(99%)']}")
    print("[INFO] -----------------Performance Summary------------------")
    if args.display_all_summary:
        print(f"[INFO] H2D_latency (ms): {fmt(summary['H2D_latency'])}")
    print(f"[INFO] NPU_compute_time (ms): {fmt(npu)}")
    if args.display_all_summary:
        print(f"[INFO] D2H_latency (ms): {fmt(summary['D2H_latency'])}")
    print(f"[INFO] throughput 1000*batchsize.mean({batchsize})/NPU_compute_time.mean({npu['mean']}): {throughput}")
    print("[INFO] ------------------------------------------------------")
    return 0


if __name__ == "__main__":
    sys.exit(main())
