# Sourced by the Ascend stage scripts (after common.sh): CANN's environment and the ais_bench check.

# Source CANN's set_env.sh when it exists: $ASCEND_TOOLKIT_HOME (the file itself, the toolkit folder or
# its latest/ folder), else /usr/local/Ascend/ascend-toolkit/set_env.sh. Returns 1 when none is found.
source_cann_env() {
    local candidates=() f
    if [ -n "${ASCEND_TOOLKIT_HOME:-}" ]; then
        candidates+=("$ASCEND_TOOLKIT_HOME" "$ASCEND_TOOLKIT_HOME/set_env.sh" "$ASCEND_TOOLKIT_HOME/../set_env.sh")
    fi
    candidates+=(/usr/local/Ascend/ascend-toolkit/set_env.sh)
    for f in "${candidates[@]}"; do
        if [ -f "$f" ]; then
            echo "[cann] source $f"
            # set_env.sh reads unset variables and may end on a false test: not under our strict mode.
            set +eu
            # shellcheck disable=SC1090
            source "$f"
            set -eu
            return 0
        fi
    done
    return 1
}

# True when TinyBERT_bs$1.om exists and $PYTHON can import ais_bench (checked with CANN's environment,
# in a subshell so that a failed check leaves this shell's environment untouched).
ais_bench_ready() {
    [ -f "TinyBERT_bs$1.om" ] || return 1
    ( source_cann_env >/dev/null || true; "$PYTHON" -c 'import ais_bench' >/dev/null 2>&1 )
}

# True when the arguments name a host backend explicitly (--backend X or TINYBERT_BACKEND).
host_backend_requested() {
    [ -n "${TINYBERT_BACKEND:-}" ] && return 0
    local a
    for a in "$@"; do [[ "$a" == --backend || "$a" == --backend=* || "$a" == --precision || "$a" == --precision=* ]] && return 0; done
    return 1
}
