"""Stand-in for `python3 -m ais_bench` 0.0.2 (tests only).

An independent implementation of the real front-end's observable behaviour (reference sections 1.1-1.6, and
ais_bench 0.0.2's infer/*.py read for facts), deliberately not sharing code with tinybert_infer:
- the NPU runtime is imported as `aclruntime` (tests/stubs/python/aclruntime: ONNX Runtime on the ONNX
  inside the stand-in OM); the model's input sizes come from its session description (realsize);
- option checks as its argparse: --loop and --batchsize > 0, --warmup_count >= 0, --device in [0, 255];
- files per batch = realsize of input 0 / size of its first file, refused only when not a whole number,
  so int64 files on an int32 OM at an even BS silently pack BS/2 files per batch, and each output slice
  (array_split of the batch's output into files-per-batch parts) holds several rows;
- the result folder <output>/<--output_dirname or YYYY_MM_DD-HH_MM_SS>/ is created only if absent, so two
  runs in the same second share it; `[INFO] output path:<dir>` is printed; <dir>_summary.json is one line;
- a short last batch padded with copies of the chunk's first file, padded outputs skipped, names
  `<input0 stem>_<k>.<fmt>`, the printed performance summary.
`AIS_BENCH_STUB_FAIL=1` makes it fail like a device error.
"""
import argparse
import json
import math
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


def at_least(minimum):
    def parse(text):
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is an invalid value (must be >= {minimum})")
        return value
    return parse


def device_id(text):
    ids = [int(v) for v in text.split(",")]
    for value in ids:
        if not 0 <= value <= 255:
            raise argparse.ArgumentTypeError(f"device:{value} is invalid. valid value range is [0, 255]")
    return ids if "," in text else ids[0]


def get_args():
    p = argparse.ArgumentParser()
    p.add_argument("--model", "-m", required=True)
    p.add_argument("--input", "-i", default=None)
    p.add_argument("--output", "-o", default=None)
    p.add_argument("--output_dirname", default=None)
    p.add_argument("--outfmt", default="BIN", choices=["NPY", "BIN", "TXT"])
    p.add_argument("--loop", "-l", type=at_least(1), default=1)
    p.add_argument("--debug", type=str2bool, default=False)
    p.add_argument("--device", "-d", type=device_id, default=0)
    p.add_argument("--dymBatch", type=int, default=0)
    p.add_argument("--dymHW", default=None)
    p.add_argument("--dymDims", default=None)
    p.add_argument("--dymShape", default=None)
    p.add_argument("--outputSize", default=None)
    p.add_argument("--auto_set_dymshape_mode", type=str2bool, default=False)
    p.add_argument("--auto_set_dymdims_mode", type=str2bool, default=False)
    p.add_argument("--batchsize", type=at_least(1), default=None)
    p.add_argument("--pure_data_type", default="zero", choices=["zero", "random"])
    p.add_argument("--profiler", type=str2bool, default=False)
    p.add_argument("--dump", type=str2bool, default=False)
    p.add_argument("--acl_json_path", default=None)
    p.add_argument("--output_batchsize_axis", type=at_least(0), default=0)
    p.add_argument("--run_mode", default="array", choices=["array", "files", "tensor", "full"])
    p.add_argument("--display_all_summary", type=str2bool, default=False)
    p.add_argument("--warmup_count", type=at_least(0), default=1)
    p.add_argument("--dymShape_range", default=None)
    args = p.parse_args()
    if args.output_dirname and not args.output:
        print("[ERROR] parameter --output_dirname cann't be used alone. Please use it together with --output")
        raise SystemExit(1)
    return args


def record():
    log = os.environ.get("STUB_ARGV_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"tool": "ais_bench", "argv": sys.argv[1:]}) + "\n")


def natural_sorted(names):
    key = lambda s: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]
    return sorted(sorted(names), key=key)


def list_files(folder):
    names = [n for n in os.listdir(folder) if n.endswith((".bin", ".BIN", ".npy", ".NPY"))]
    return [os.path.join(folder, n) for n in natural_sorted(names)]


def file_bytes(path):
    return np.load(path).nbytes if path.lower().endswith(".npy") else os.path.getsize(path)


def read_raw(path):
    if path.lower().endswith(".npy"):
        return np.load(path).tobytes()
    with open(path, "rb") as handle:
        return handle.read()


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


def fail(message):
    print(f"[ERROR] {message}")
    return 1


def feed_of(raw):
    """An aclruntime.BaseTensor over a bytes buffer (kept alive by the caller)."""
    import aclruntime

    buffer = np.frombuffer(raw, dtype=np.uint8)
    return aclruntime.BaseTensor(buffer.__array_interface__["data"][0], buffer.nbytes), buffer


def main():
    args = get_args()
    record()
    import aclruntime  # the real front-end imports it in its session module: no aclruntime, no run

    if os.environ.get("AIS_BENCH_STUB_FAIL"):
        return fail("acl init failed: device 0 not available (ret 507033)")
    options = aclruntime.session_options()
    options.loop = args.loop
    try:
        session = aclruntime.InferenceSession(args.model, args.device if isinstance(args.device, int) else 0, options)
    except RuntimeError as exc:
        return fail(str(exc))
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if args.debug:
        print(f"[DEBUG] session info:{session}")
    batchsize = args.batchsize or inputs[0].shape[0]

    out_dir = None
    if args.output:
        out_dir = os.path.join(args.output, args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S"))
        if not os.path.exists(out_dir):
            os.makedirs(out_dir, 0o755)
        print(f"[INFO] output path:{out_dir}")

    if args.input is None:
        listing, files_per_batch = None, 1
        make = (lambda n: bytes(n)) if args.pure_data_type == "zero" else (lambda n: os.urandom(n))
        chunks = [[None]]
        raw_batches = [[make(d.realsize) for d in inputs]]
    else:
        dirs = args.input.split(",")
        if len(dirs) != len(inputs):
            return fail(f"Invalid args. args input dir num:{len(dirs)} not equal to model inputs num:{len(inputs)}")
        listing = [list_files(d) for d in dirs]
        size0, tensor0 = file_bytes(listing[0][0]), inputs[0].realsize
        if size0 == 0 or tensor0 % size0:
            return fail(f"arg0 tensorsize: {tensor0} filesize: {size0} not match")
        files_per_batch = tensor0 // size0
        runcount = math.ceil(len(listing[0]) / files_per_batch)
        print(f"[INFO] get filesperbatch files0 size:{size0} tensor0size:{tensor0} "
              f"filesperbatch:{files_per_batch} runcount:{runcount}")
        chunks, raw_batches = [], []
        for r in range(runcount):
            idx = list(range(r * files_per_batch, min((r + 1) * files_per_batch, len(listing[0]))))
            chunks.append(idx + [None] * (files_per_batch - len(idx)))
            raws = []
            for k, files in enumerate(listing):
                raw = b"".join(read_raw(files[i if i is not None else idx[0]]) for i in chunks[-1])
                if len(raw) != inputs[k].realsize:
                    return fail(f"ndata size:{len(raw)} not match {inputs[k].realsize}")
                raws.append(raw)
            raw_batches.append(raws)

    names = [o.name for o in outputs]

    def run(raws):
        feeds = [feed_of(raw) for raw in raws]
        return [np.array(t) for t in session.run(names, [f for f, _ in feeds])]

    options.loop = 1
    for _ in range(args.warmup_count):
        run(raw_batches[0])
    options.loop = args.loop
    session.reset_sumaryinfo()
    filesinfo = {}
    for b, raws in enumerate(raw_batches):
        results = run(raws)
        if out_dir is None:
            continue
        for k, result in enumerate(results):
            if result.shape[args.output_batchsize_axis] % files_per_batch:
                return fail(f"save out files error array shape:{result.shape} files_count_perbatch:{files_per_batch}")
            for slot, part in enumerate(np.array_split(result, files_per_batch, axis=args.output_batchsize_axis)):
                index = chunks[b][slot]
                if args.input is None:
                    stem = "pure_infer_data"
                elif index is None:
                    continue  # padding placeholder: nothing written
                else:
                    stem = os.path.basename(listing[0][index]).split(".")[0]
                path = os.path.join(out_dir, f"{stem}_{k}.{args.outfmt.lower()}")
                save(path, part, args.outfmt)
                if index is not None:
                    sample = b * files_per_batch + slot
                    entry = filesinfo.setdefault(sample, {"infiles": [files[index] for files in listing], "outfiles": []})
                    entry["outfiles"].append(path)

    times = list(session.sumary().exec_time_list)
    npu = stats(times)
    throughput = 1000 * batchsize / npu["mean"] if npu["mean"] else 0
    summary = {"filesinfo": filesinfo, "args": sys.argv, "NPU_compute_time": npu, "H2D_latency": stats([]),
               "D2H_latency": stats([]), "throughput": throughput, "npu_compute_time_list": times,
               "pid": os.getpid()}
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
    if out_dir is not None:
        with open(out_dir + "_summary.json", "w") as handle:
            json.dump(summary, handle)  # one line, as the real summary
    session.finalize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
