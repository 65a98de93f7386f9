#!/usr/bin/env bash
# The whole job for one batch size: export, (atc and ais_bench with CHIP), preprocess, inference, accuracy.
# With CHIP the Ascend path is required: no CANN, ais_bench or aclruntime stops here with one line
# (exit 7) instead of running on the host.
USAGE="bash test/run_all.sh BS [CHIP]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_bs "${1:-}"
[ $# -le 2 ] || die_usage "expected BS [CHIP], got $# arguments"
bs="$1"
chip="${2:-}"
[ -n "$chip" ] && check_chip "$chip"
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/ascend_env.sh"
if [ -n "$chip" ]; then
    cann_found || { cann_missing_line "$chip" >&2; exit 7; }
    missing="$(ais_bench_missing_module)"
    [ -z "$missing" ] || { echo "error: CHIP $chip given, but $missing is not importable by $PYTHON (with CANN's environment): install the aclruntime and ais_bench wheels from Ascend/tools ais-bench_workload" >&2; exit 7; }
fi

bash "$here/pth2onnx.sh" "$bs"
[ -n "$chip" ] && bash "$here/onnx2om.sh" "$bs" "$chip"
bash "$here/preprocess_data.sh"
log="$(mktemp)"; trap 'rm -f "$log"' EXIT
bash "$here/ais_inference.sh" "$bs" | tee "$log"
folder="$(sed -n 's/^result folder: //p' "$log" | tail -n 1)"
[ -n "$folder" ] || { echo "error: inference did not report its result folder" >&2; exit 1; }
if [ -n "$chip" ] && ! grep -q '^\[path\] ais_bench on the NPU' "$log"; then
    echo "error: CHIP $chip given, but inference did not take the ais_bench path" >&2; exit 7
fi
bash "$here/postprocess_data.sh" "$folder" | tee -a "$log"
echo "=== TinyBERT bs$bs: $(grep -m1 '^acc:' "$log"), throughput $(grep -m1 'throughput' "$log" | awk '{print $NF}') samples/s (folder result/$folder)"
