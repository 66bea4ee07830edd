# Shared helpers for the bench scripts: build, start and stop local clusters.
# Sourced, not run. Every server started here is stopped by pid.

set -euo pipefail
BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RINGKV="${BENCH_RINGKV:-$BENCH_ROOT/target/release/ringkv}"
PIDS=()

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2 (for $1)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

build_release() {
  if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    (cd "$BENCH_ROOT" && cargo build --release -q)
  fi
}

cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT

# start_ringkv BASE_PORT DATA_DIR N [node flags...]: a local cluster via `up`; waits for `ready`.
start_ringkv() {
  local base=$1 dir=$2 n=$3; shift 3
  rm -rf "$dir"; mkdir -p "$dir"
  "$RINGKV" up --nodes "$n" --base-port "$base" --data-dir "$dir" -- "$@" >"$dir/up.out" 2>"$dir/up.err" &
  PIDS+=($!)
  for _ in $(seq 300); do
    grep -q '^ready' "$dir/up.out" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "cluster did not become ready; see $dir" >&2
  return 1
}

# stop_last: stop the most recently started server (and, for `up`, its nodes).
stop_last() {
  local last=$(( ${#PIDS[@]} - 1 ))
  local pid=${PIDS[$last]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$last]"
  PIDS=("${PIDS[@]:-}")
}

# rb_ops "LINE": requests per second from redis-benchmark's last CSV line for a test.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

machine() {
  echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr), $(date -u +%Y-%m-%d)"
}
