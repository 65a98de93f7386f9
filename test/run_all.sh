#!/usr/bin/env bash
# The whole job for one batch size: export, (atc where present), preprocess, inference, accuracy.
USAGE="bash test/run_all.sh BS [CHIP]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_bs "${1:-}"
[ $# -le 2 ] || die_usage "expected BS [CHIP], got $# arguments"
bs="$1"
[ -n "${2:-}" ] && check_chip "$2"
here="$(dirname "${BASH_SOURCE[0]}")"

bash "$here/pth2onnx.sh" "$bs"
if [ -n "${2:-}" ] && { command -v atc >/dev/null 2>&1 || [ -f /usr/local/Ascend/ascend-toolkit/set_env.sh ]; } \
    && [ -f "$here/onnx2om.sh" ]; then
    bash "$here/onnx2om.sh" "$bs" "$2"
fi
bash "$here/preprocess_data.sh"
log="$(mktemp)"; trap 'rm -f "$log"' EXIT
bash "$here/ais_inference.sh" "$bs" | tee "$log"
folder="$(sed -n 's/^result folder: //p' "$log" | tail -n 1)"
[ -n "$folder" ] || { echo "error: inference did not report its result folder" >&2; exit 1; }
bash "$here/postprocess_data.sh" "$folder" | tee -a "$log"
echo "=== TinyBERT bs$bs: $(grep -m1 '^acc:' "$log"), throughput $(grep -m1 'throughput' "$log" | awk '{print $NF}') samples/s (folder result/$folder)"
