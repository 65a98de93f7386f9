#!/usr/bin/env bash
# Stage 3: glue_dir/SST-2/dev.tsv -> bert_bin/{input_ids,segment_ids,input_mask}/input<i>.bin + manifest.json
USAGE="bash test/preprocess_data.sh [--tsv FILE | --data_dir DIR] [--model_dir DIR] [--output_dir bert_bin]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { echo "usage: $USAGE"; exit 0; }
"$PYTHON" "$ROOT/TinyBERT_preprocess.py" "$@"
