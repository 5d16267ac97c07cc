# Helpers for the end-to-end tests (sourced). Each test runs in its own temp directory,
# exits 0 on success, 77 when it cannot run here, anything else on failure.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${MOE_BIN:-$ROOT/bin}  # the sanitizer build exports MOE_BIN
# The real text the tests read (tests/data/README.md): inside the repository, nothing beside it.
DATA=$ROOT/tests/data
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

# kjv_lm SPLIT [LINES]: the PTB-style KJV of tests/data/kjv-lm (SPLIT train, valid or test), or its first LINES
# lines, as plain text on stdout.
kjv_lm() {
    if [ $# -gt 1 ]; then zcat "$DATA/kjv-lm/$1.txt.gz" | head -n "$2"; else zcat "$DATA/kjv-lm/$1.txt.gz"; fi
}

# Train/eval losses from a log: "step loss" pairs of the [train] lines.
losses() { awk '/\[train\] step/ { print $5, $11 }' "$@"; }
