# Sourced by the stage scripts: strict mode, the interpreter, the package on the path, argument checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die_usage() { echo "usage: $USAGE" >&2; [ -n "${1:-}" ] && echo "error: $1" >&2; exit 2; }

check_bs() {
    [[ "${1:-}" =~ ^[1-9][0-9]{0,5}$ ]] || die_usage "BS must be a positive integer, got '${1:-}'"
}

check_chip() {
    [[ "${1:-}" =~ ^[A-Za-z0-9]+$ ]] || die_usage "CHIP must be letters and digits (as npu-smi info prints it, e.g. 310P3), got '${1:-}'"
}

# Folder names written by inference: a plain name directly inside result/.
check_result_folder() {
    local f="${1:-}"
    [[ -n "$f" && "$f" != "." && "$f" != ".." && "$f" != */* && "$f" != .* ]] \
        || die_usage "FOLDER must be a folder name directly inside result/ (no '/', '..' or absolute path), got '$f'"
}
