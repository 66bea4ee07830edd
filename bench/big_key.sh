#!/usr/bin/env bash
# Writes to one large key while the nodes compact their commit logs: the latency a client sees (its maximum above
# all) and what each compaction took. A snapshot used to encode a large hash under its bucket's read lock and held
# up every write to it for that long (BENCHMARKS.md, stop 37).
#
#   bench/big_key.sh                  # HSET into one hash, 3 nodes (about 1 minute)
#   T=sadd NODES=1 bench/big_key.sh   # SADD into one set, one node
#
# Load: redis-benchmark -t T -c 50 -P 16 -d 64 -r 100000 against node 1, first 300,000 requests unmeasured (the
# key fills up to ~100,000 fields or members), then N (2,000,000) measured. `-t hset` and `-t sadd` write one key
# each (myhash, myset). Nodes: `ringkv up` with worker_threads=1, compaction_min_bytes=4000000 (a compaction every
# few seconds of this load) and anti-entropy off (its rounds are not measured here). Prints redis-benchmark's CSV
# (rps; avg, min, p50, p95, p99 and max latency in ms) and, for every node, its compactions' count and time.
source "$(dirname "$0")/lib.sh"
need redis-benchmark redis-tools
need redis-cli redis-tools
build_release

WORK=${WORK:-/tmp/ringkv-bench-big-key}
BASE=${BASE:-19400}
T=${T:-hset}
NODES=${NODES:-3}
N=${N:-2000000}

machine_long
start_ringkv "$BASE" "$WORK" "$NODES" --set worker_threads=1 --set compaction_min_bytes=4000000 \
  --set anti_entropy_interval_ms=600000
LOAD=(-p $((BASE + 1)) -c 50 -P 16 -d 64 -r 100000 -t "$T")
redis-benchmark "${LOAD[@]}" -n 300000 -q >/dev/null
redis-benchmark "${LOAD[@]}" -n "$N" --csv | tail -2
for log in "$WORK"/n*.log; do
  ms=$(grep -o 'compacted the commit log.*elapsed_ms=[0-9]*' "$log" | sed 's/.*elapsed_ms=//' || true)
  [ -z "$ms" ] && { echo "$(basename "$log" .log): no compaction"; continue; }
  echo "$(basename "$log" .log): $(echo "$ms" | wc -l) compactions, elapsed ms median $(echo "$ms" | median)," \
    "max $(echo "$ms" | sort -n | tail -1)"
done
