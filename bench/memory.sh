#!/usr/bin/env bash
# Issue 7: memory per key. 1,000,000 keys with 64-byte values loaded into a 3-node ringkv cluster (every
# node holds every key: N = 3) and into one redis-server; RSS per key held for each ringkv node, next to
# Redis's used_memory (INFO memory) per key and its RSS per key.
#
#   bench/memory.sh              # 1M keys
#   KEYS=20000 bench/memory.sh   # a smoke test
source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need redis-cli redis-tools
build_release

WORK=${WORK:-/tmp/ringkv-bench-memory}
KEYS=${KEYS:-1000000}
RINGKV_BASE=${RINGKV_BASE:-18500}
REDIS_PORT=${REDIS_PORT:-16479}
rm -rf "$WORK"; mkdir -p "$WORK"
machine_long
cat <<EOF
ringkv: $RINGKV up --nodes 3 --base-port $RINGKV_BASE --data-dir $WORK/ringkv   (default settings)
redis:  redis-server --port $REDIS_PORT --save '' --appendonly no
load:   $KEYS x SET key:I <64 bytes>, generated RESP | redis-cli -p PORT --pipe   (ringkv through node 1)
measure: VmRSS from /proc/PID/status; keys from INFO's db0 keys=; Redis also INFO memory used_memory
