#!/usr/bin/env bash
# Stage 4: run the model over bert_bin/ the way ais_bench does, into a new folder under result/.
# On a host without ais_bench or TinyBERT_bs$BS.om this runs TinyBERT_sim_bs$BS.onnx on the CPU
# (by default the fastest exact-fp32 artefact, measured on this host and cached: --backend auto, see
# docs/performance.md; --precision int8|bf16 for low precision; TINYBERT_BACKEND=... or --backend
# onnxruntime|openvino|torch to name one).
# With the ais_bench tool and TinyBERT_bs$BS.om it runs python3 -m ais_bench instead (README.md, "Hardware targets").
USAGE="bash test/ais_inference.sh BS [--backend auto|onnxruntime|openvino|torch] [--precision fp32|int8|bf16] [--outfmt TXT|BIN|NPY] [--output_dirname NAME] [--loop N] [--warmup_count N] [--device ID] [--dynamic_length [--pad_multiple 8|--buckets 16,32,48,64]]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_bs "${1:-}"
bs="$1"; shift
inputs="bert_bin/input_ids,bert_bin/segment_ids,bert_bin/input_mask"
model="TinyBERT_sim_bs$bs.onnx"
# --dynamic_length: length-aware batching on the host with the dynamic export (docs/dynamic.md).
[[ " $* " == *" --dynamic_length "* ]] && model="TinyBERT_sim_dyn.onnx"
# Ascend host (ais_bench importable and TinyBERT_bs$BS.om present, no backend named): the real ais_bench.
source "$(dirname "${BASH_SOURCE[0]}")/ascend_env.sh"
if ! host_backend_requested "$@" && [ "$model" != TinyBERT_sim_dyn.onnx ] && ais_bench_ready "$bs"; then
    source_cann_env || true
    echo "[path] ais_bench on the NPU (real tool): TinyBERT_bs$bs.om"
    exec "$PYTHON" -m tinybert_infer ais-infer --model "TinyBERT_bs$bs.om" --input "$inputs" --output result \
        --outfmt TXT --batchsize "$bs" "$@"
fi
backend_args=()
[ -n "${TINYBERT_BACKEND:-}" ] && backend_args=(--backend "$TINYBERT_BACKEND")
echo "[path] host backend (no ais_bench/OM used)"
"$PYTHON" -m tinybert_infer infer --model "$model" --input "$inputs" --output result \
    --outfmt TXT --batchsize "$bs" "${backend_args[@]}" "$@"
