#!/usr/bin/env bash
# GPU throughput (NVIDIA): trtexec on TinyBERT_sim_bs$BS.onnx with flags for the installed TensorRT;
# prints fps = 1000*BS/mean GPU compute time (ModelZoo's T4 convention) and qps*BS.
USAGE="bash test/trt_perf.sh BS [--fp16] [--workspace MiB] [--trt_version X.Y] [--json FILE] [--dry-run] [-- trtexec options]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_bs "${1:-}"
bs="$1"; shift
exec "$PYTHON" -m tinybert_infer trt-perf --batch_size "$bs" "$@"
