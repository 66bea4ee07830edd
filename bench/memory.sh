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
echo "ringkv: $RINGKV up --nodes 3 --base-port $RINGKV_BASE --data-dir $WORK/ringkv   (default settings)"
echo "redis:  redis-server --port $REDIS_PORT --save '' --appendonly no"
echo "load:   $KEYS x SET key:I <64 bytes>, generated RESP | redis-cli -p PORT --pipe   (ringkv through node 1)"
echo "measure: VmRSS from /proc/PID/status; keys from INFO's db0 keys=; Redis also INFO memory used_memory"

# load PORT TAG: pipes KEYS SETs into PORT; prints the seconds it took; fails on any error reply.
load() {
  local t0 t1 out
  t0=$(date +%s.%N)
  out=$(gen_sets "$KEYS" "$2" | redis-cli -p "$1" --pipe 2>&1 | tail -1)
  t1=$(date +%s.%N)
  echo "$out" | grep -q "errors: 0, replies: $KEYS" || { echo "load into $1 failed: $out" >&2; return 1; }
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}'
}

used_memory() { redis-cli -p "$1" info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}'; }

# --- ringkv
ringkv_ports_free "$RINGKV_BASE" 3
start_ringkv "$RINGKV_BASE" "$WORK/ringkv" 3
read -r -a pids <<<"$(ringkv_pids "$WORK/ringkv")"
sleep 5 # past the start-up anti-entropy rounds
before=()
for pid in "${pids[@]}"; do before+=("$(rss_kb "$pid")"); done
secs=$(load $((RINGKV_BASE + 1)) r)
echo "ringkv: loaded $KEYS keys through node 1 in $secs s ($(awk -v k="$KEYS" -v s="$secs" 'BEGIN {printf "%.0f", k / s}') SET/s)"
# The third replica of each write may still be in flight when the pipe ends: wait until every node holds all.
for _ in $(seq 600); do
  full=0
  for i in 1 2 3; do
    [ "$(info_keys $((RINGKV_BASE + i)))" -ge "$KEYS" ] && full=$((full + 1))
  done
  [ "$full" = 3 ] && break
  sleep 0.1
done
sleep 3 # let the commit log's interval fsync and any allocator purging pass
echo
echo "| ringkv node | keys held | RSS empty | RSS loaded | RSS / key | (loaded - empty) / key |"
echo "|---|---|---|---|---|---|"
ringkv_rows=()
for i in 0 1 2; do
  pid=${pids[$i]}
  keys=$(info_keys $((RINGKV_BASE + i + 1)))
  rss=$(rss_kb "$pid")
  row=$(awk -v n="n$((i + 1))" -v k="$keys" -v b="${before[$i]}" -v r="$rss" 'BEGIN {
    printf "%s %d %.1f %.1f %.1f %.1f", n, k, b / 1024, r / 1024, r * 1024 / k, (r - b) * 1024 / k }')
  ringkv_rows+=("$row")
  echo "$row" | awk '{printf "| %s | %d | %.1f MiB | %.1f MiB | %.1f B | %.1f B |\n", $1, $2, $3, $4, $5, $6}'
done
grep -h "VmRSS\|RssAnon\|RssFile" "/proc/${pids[0]}/status" | tr -s ' \t' ' ' | paste -sd';' | sed 's/^/ringkv n1: /'
stop_last

# --- redis
start_redis "$REDIS_PORT" "$WORK/redis"
redis_pid=${PIDS[-1]}
used0=$(used_memory "$REDIS_PORT")
rss0=$(rss_kb "$redis_pid")
secs=$(load "$REDIS_PORT" r)
echo
echo "redis: loaded $KEYS keys in $secs s"
sleep 1
keys=$(info_keys "$REDIS_PORT")
used=$(used_memory "$REDIS_PORT")
rss=$(rss_kb "$redis_pid")
redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' |
  grep -E '^(used_memory|used_memory_rss|mem_fragmentation_ratio|mem_allocator):' | paste -sd' '
echo
echo "| redis-server | keys | used_memory | used_memory / key | (used - empty) / key | RSS | RSS / key |"
echo "|---|---|---|---|---|---|---|"
awk -v k="$keys" -v u="$used" -v u0="$used0" -v r="$rss" 'BEGIN {
  printf "| one instance | %d | %.1f MiB | %.1f B | %.1f B | %.1f MiB | %.1f B |\n",
    k, u / 1048576, u / k, (u - u0) / k, r / 1024, r * 1024 / k }'
echo "(redis RSS empty: $((rss0 / 1024)) MiB, used_memory empty: $((used0 / 1024)) KiB)"
echo
for row in "${ringkv_rows[@]}"; do
  echo "$row" | awk -v u="$used" -v k="$keys" -v r="$rss" '{
    printf "ringkv %s: RSS/key over Redis used_memory/key %.2fx, over Redis RSS/key %.2fx\n",
      $1, $5 / (u / k), $5 / (r * 1024 / k) }'
done
