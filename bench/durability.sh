#!/usr/bin/env bash
# Issue 3 benchmarks: write throughput of a 3-node cluster per fsync mode,
# and recovery time / disk bytes per key for a node holding 1M keys.
#
#   bench/durability.sh            # everything
#   KEYS=200000 bench/durability.sh recovery
source "$(dirname "$0")/lib.sh"
need redis-benchmark redis-tools
need bc bc
build_release
WORK=${WORK:-/tmp/ringkv-bench-durability}
KEYS=${KEYS:-1000000}
REQUESTS=${REQUESTS:-300000}
echo "machine: $(machine)"

throughput() {
  for mode in always interval never; do
    start_ringkv 7400 "$WORK/$mode" 3 --set "fsync=$mode"
    line=$(redis-benchmark -p 7401 -t set -c 50 -P 16 -n "$REQUESTS" -d 64 -r 100000 --csv | tail -1)
    echo "fsync=$mode  redis-benchmark -p 7401 -t set -c 50 -P 16 -n $REQUESTS -d 64 -r 100000 => $line"
    stop_last
  done
}

recovery() {
  local dir="$WORK/recovery"
  rm -rf "$dir"; mkdir -p "$dir"
  # One node (N = 1 effective): every key is held locally.
  "$RINGKV" node --name solo --client 127.0.0.1:7451 --peer 127.0.0.1:7551 --admin 127.0.0.1:7651 \
    --data-dir "$dir/solo" --set fsync=never >"$dir/solo.log" 2>&1 &
  local pid=$!; PIDS+=($pid)
  until redis-cli -p 7451 ping >/dev/null 2>&1; do sleep 0.05; done
  for round in 1 2 3; do
    gen_sets "$KEYS" "$round" | redis-cli -p 7451 --pipe >/dev/null
  done
  # Three rounds wrote every key three times: the log passes 2x the live data and compacts.
  for _ in $(seq 600); do
    grep -q "compacted the commit log" "$dir/solo.log" && break; sleep 0.1
  done
  local keys; keys=$(redis-cli -p 7451 info | awk -F: '/^db0/ {split($2,a,","); sub("keys=","",a[1]); print a[1]}')
  local bytes; bytes=$(du -sb "$dir/solo/log" | cut -f1)
  echo "recovery: $keys keys of 64-byte values; log after compaction: $bytes bytes = $((bytes / keys)) bytes/key"
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  local t0; t0=$(date +%s.%N)
  "$RINGKV" node --name solo --client 127.0.0.1:7451 --peer 127.0.0.1:7551 --admin 127.0.0.1:7651 \
    --data-dir "$dir/solo" >>"$dir/solo.log" 2>&1 &
  PIDS+=($!)
  until redis-cli -p 7451 ping >/dev/null 2>&1; do sleep 0.01; done
  local t1; t1=$(date +%s.%N)
  echo "recovery: start to serving after kill -9: $(echo "$t1 - $t0" | bc) s ($(redis-cli -p 7451 info | grep '^db0'))"
  grep "store rebuilt" "$dir/solo.log" | tail -1
}

case "${1:-all}" in
  throughput) throughput ;;
  recovery) recovery ;;
  all) throughput; recovery ;;
esac
