#!/usr/bin/env bash
# The results table on this CPU: every backend, BS 1-64, accuracy through the pipeline, the machine's limit.
# Writes benchmark.md, benchmark.json, benchmark.png (in --out, default the current folder). --quick for CI.
USAGE="bash test/benchmark.sh [--quick] [--out DIR] [--batch_sizes 1,4,8] [--backends onnxruntime,openvino-fp32,...] [--threads N] [--model_dir DIR] [--data_dir DIR]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { echo "usage: $USAGE"; exit 0; }
"$PYTHON" -m tinybert_infer benchmark "$@"
