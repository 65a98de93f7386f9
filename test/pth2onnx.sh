#!/usr/bin/env bash
# Stage 1: checkpoint -> TinyBERT_bs$BS.onnx -> (onnxsim) TinyBERT_sim_bs$BS.onnx, validated against PyTorch.
USAGE="bash test/pth2onnx.sh BS [--model_dir DIR] [--opset N]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_bs "${1:-}"
bs="$1"; shift
"$PYTHON" "$ROOT/TinyBERT_pth2onnx.py" --batch_size "$bs" "$@"
