#!/usr/bin/env bash
# Stage 2 (Ascend): TinyBERT_sim_bs$BS.onnx -> atc -> TinyBERT_bs$BS.om. CHIP as `npu-smi info` prints it
# (310P3, 310; older CANN: 710). Extra atc options after `--`, e.g. -- --precision_mode=allow_mix_precision
USAGE="bash test/onnx2om.sh BS CHIP [--dry-run] [--log debug|info|warning|error|null] [-- atc options]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/ascend_env.sh"
check_bs "${1:-}"
check_chip "${2:-}"
bs="$1"; chip="$2"; shift 2
source_cann_env || true  # without CANN the Python side says how to get atc (or --dry-run prints the command)
exec "$PYTHON" -m tinybert_infer om --batch_size "$bs" --chip "$chip" "$@"
