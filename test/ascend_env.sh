# Sourced by the Ascend stage scripts (after common.sh): where CANN is, its environment, the ais_bench check.
# Every script decides where CANN is through cann_set_env_file / cann_found, in this order:
# atc already on PATH (the user sourced CANN), $ASCEND_TOOLKIT_HOME, the default install path.

DEFAULT_CANN_SET_ENV=/usr/local/Ascend/ascend-toolkit/set_env.sh

# Print CANN's set_env.sh: $ASCEND_TOOLKIT_HOME (the file itself, the toolkit folder or its latest/ folder),
# else the default install path. Returns 1 when none is found.
cann_set_env_file() {
    local candidates=() f
    if [ -n "${ASCEND_TOOLKIT_HOME:-}" ]; then
        candidates+=("$ASCEND_TOOLKIT_HOME" "$ASCEND_TOOLKIT_HOME/set_env.sh" "$ASCEND_TOOLKIT_HOME/../set_env.sh")
    fi
    candidates+=("$DEFAULT_CANN_SET_ENV")
    for f in "${candidates[@]}"; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    return 1
}

# True when CANN is reachable: atc on PATH, or a set_env.sh found as above.
cann_found() {
    command -v atc >/dev/null 2>&1 || cann_set_env_file >/dev/null
}

# The one line printed when a CHIP is named and cann_found is false.
cann_missing_line() {
    echo "error: CHIP $1 given, but no CANN toolkit found (no atc on PATH, ASCEND_TOOLKIT_HOME=${ASCEND_TOOLKIT_HOME:-<unset>}, no $DEFAULT_CANN_SET_ENV): install CANN or set ASCEND_TOOLKIT_HOME; without CHIP the host backend runs"
}

# Source CANN's set_env.sh when there is one. Returns 1 when none is found.
source_cann_env() {
    local f
    f="$(cann_set_env_file)" || return 1
    echo "[cann] source $f"
    # set_env.sh reads unset variables and may end on a false test: not under our strict mode.
    set +eu
    # shellcheck disable=SC1090
    source "$f"
    set -eu
    return 0
}

# Print the first Python module of the real path that $PYTHON cannot import (ais_bench, then its NPU runtime
# aclruntime), checked with CANN's environment in a subshell; print nothing when both import.
ais_bench_missing_module() {
    ( source_cann_env >/dev/null || true
      for m in ais_bench aclruntime; do
          "$PYTHON" -c "import $m" >/dev/null 2>&1 || { echo "$m"; exit 0; }
      done )
}

# True when TinyBERT_bs$1.om exists and $PYTHON can import ais_bench: the real path is meant. Its other
# needs (aclruntime, the OM's input description) are checked by `ais-infer` before ais_bench runs.
ais_bench_ready() {
    [ -f "TinyBERT_bs$1.om" ] || return 1
    [ "$(ais_bench_missing_module)" != ais_bench ]
}

# True when the arguments name a host backend explicitly (--backend X or TINYBERT_BACKEND).
host_backend_requested() {
    [ -n "${TINYBERT_BACKEND:-}" ] && return 0
    local a
    for a in "$@"; do [[ "$a" == --backend || "$a" == --backend=* || "$a" == --precision || "$a" == --precision=* ]] && return 0; done
    return 1
}
