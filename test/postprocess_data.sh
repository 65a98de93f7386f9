#!/usr/bin/env bash
# Stage 5: result/FOLDER (ais_bench layout) -> acc:0.xxxx, report, result/FOLDER_metrics.json
USAGE="bash test/postprocess_data.sh FOLDER [--bin_dir bert_bin]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_result_folder "${1:-}"
folder="$1"; shift
"$PYTHON" "$ROOT/TinyBERT_postprocess.py" --result_dir "result/$folder" "$@"
