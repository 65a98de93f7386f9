#!/usr/bin/env bash
# Performance-only run, as ModelZoo measures it: pure inference on generated inputs, LOOP executions.
# With ais_bench and TinyBERT_bs$BS.om (Ascend): python3 -m ais_bench --model TinyBERT_bs$BS.om --loop LOOP --batchsize BS
# Otherwise: the host backend on TinyBERT_sim_bs$BS.onnx (infer without --input; --backend/--pure_data_type pass through).
# On the ais_bench path --pure_data_type, --warmup_count and --device are passed on; --threads (host only) is refused.
USAGE="bash test/ais_perf.sh BS [LOOP] [--backend NAME] [--pure_data_type zero|random] [--warmup_count N] [--device ID] [--threads N]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/ascend_env.sh"
check_bs "${1:-}"
bs="$1"; shift
loop=""
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    [[ "$1" =~ ^[1-9][0-9]*$ ]] || die_usage "LOOP must be a positive integer, got '$1'"
    loop="$1"; shift
fi
if ! host_backend_requested "$@" && ais_bench_ready "$bs"; then
    source_cann_env || true
    echo "[path] ais_bench pure inference on the NPU: TinyBERT_bs$bs.om"
    exec "$PYTHON" -m tinybert_infer ais-perf --model "TinyBERT_bs$bs.om" --loop "${loop:-1000}" --batchsize "$bs" "$@"
fi
backend_args=()
[ -n "${TINYBERT_BACKEND:-}" ] && backend_args=(--backend "$TINYBERT_BACKEND")
echo "[path] host backend pure inference (no ais_bench/OM used): TinyBERT_sim_bs$bs.onnx"
exec "$PYTHON" -m tinybert_infer infer --model "TinyBERT_sim_bs$bs.onnx" --batchsize "$bs" --loop "${loop:-100}" \
    "${backend_args[@]}" "$@"
