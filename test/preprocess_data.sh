#!/usr/bin/env bash
# Stage 3: glue_dir/SST-2/dev.tsv -> bert_bin/{input_ids,segment_ids,input_mask}/input<i>.bin + manifest.json
# (--dtype int32: for an OM whose inputs atc made int32; ais_inference.sh says when it is needed)
USAGE="bash test/preprocess_data.sh [--tsv FILE | --data_dir DIR] [--model_dir DIR] [--output_dir bert_bin] [--dtype int64|int32]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { echo "usage: $USAGE"; exit 0; }
"$PYTHON" "$ROOT/TinyBERT_preprocess.py" "$@"
