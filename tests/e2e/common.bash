# Helpers for the end-to-end tests (sourced). Each test runs in its own temp directory,
# exits 0 on success, 77 when it cannot run here, anything else on failure.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${MOE_BIN:-$ROOT/bin}  # the sanitizer build exports MOE_BIN
SHARED=${MOE_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect CODE PATTERN cmd...: run cmd, require exit CODE and PATTERN (grep -E) in stderr.
expect() {
    local code=$1 pat=$2
    shift 2
    "$@" >out.txt 2>err.txt
    local rc=$?
    [ "$rc" -eq "$code" ] || { cat err.txt >&2; fail "exit $rc, expected $code: $*"; }
    grep -qE -- "$pat" err.txt || { cat err.txt >&2; fail "no '$pat' in stderr of: $*"; }
}

# Train/eval losses from a log: "step loss" pairs of the [train] lines.
losses() { awk '/\[train\] step/ { print $5, $11 }' "$@"; }
