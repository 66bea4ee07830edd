# Step reporting shared by docker/e2e.sh, docker/tls-check.sh and
# deploy/kubernetes/compose-test.sh. Sourced, not run. The caller declares
# SUMMARY=() and CURRENT_STEP before the first step.

step() {
    CURRENT_STEP=$*
    printf '\n== %s\n' "$*"
}

pass() {
    echo "PASS: $*"
    SUMMARY+=("PASS  $*")
}

fail() {
    echo "FAIL: $*" >&2
    SUMMARY+=("FAIL  $CURRENT_STEP: $*")
    exit 1
}

# MILLISECONDS as seconds with two decimals.
secs() {
    awk -v ms="$1" 'BEGIN { printf "%.2f s", ms / 1000 }'
}
