#!/usr/bin/env bash
# Issues 7 and 15: memory per element. Three shapes, each loaded into a fresh 3-node ringkv cluster (every node
# holds every element: N = 3) and a fresh redis-server:
#   strings: 1,000,000 keys `SET key:I <64 bytes>`;
#   expiring: the same keys `SET key:I <64 bytes> EX 86400` (a key with an expiry is a rich state: a cell);
#   hashes:  1,000 hashes of 1,000 fields, `HSET h:I f:J <16 bytes>` (1M fields);
#   sets:    1,000 sets of 1,000 members, `SADD s:I m:J` (1M members).
# Prints RSS per element for each ringkv node (and the three together) next to Redis's used_memory (INFO memory)
# per element and its RSS per element, and the ratio of each node's RSS to Redis's used_memory.
#
#   bench/memory.sh                                           # all four shapes, 1M elements each (about 6 minutes)
#   SHAPE=hashes bench/memory.sh                              # one shape: strings, expiring, hashes or sets
#   KEYS=20000 COLLS=100 PER=200 bench/memory.sh              # a smoke test
source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need redis-cli redis-tools
build_release

WORK=${WORK:-/tmp/ringkv-bench-memory}
SHAPE=${SHAPE:-all}
KEYS=${KEYS:-1000000}     # strings: keys
COLLS=${COLLS:-1000}      # hashes and sets: how many
PER=${PER:-1000}          # fields (members) in each
HVAL=${HVAL:-16}          # bytes of each hash field's value
RINGKV_BASE=${RINGKV_BASE:-18500}
REDIS_PORT=${REDIS_PORT:-16479}
case $SHAPE in
  all) SHAPES=(strings expiring hashes sets) ;;
  strings | expiring | hashes | sets) SHAPES=("$SHAPE") ;;
  *) echo "SHAPE must be strings, expiring, hashes, sets or all" >&2; exit 2 ;;
esac
rm -rf "$WORK"; mkdir -p "$WORK"
SUMMARY="$WORK/summary.txt"
: >"$SUMMARY"
machine_long
echo "ringkv: $RINGKV up --nodes 3 --base-port $RINGKV_BASE --data-dir $WORK/ringkv-SHAPE   (default settings)"
echo "redis:  redis-server --port $REDIS_PORT --save '' --appendonly no   (default encodings)"
echo "load:   generated RESP | redis-cli -p PORT --pipe   (ringkv through node 1); fresh servers for each shape"
echo "  strings: $KEYS x SET key:I <64 bytes>"
echo "  expiring: $KEYS x SET key:I <64 bytes> EX 86400"
echo "  hashes:  $COLLS hashes x $PER fields: HSET h:I f:J <$HVAL bytes>, field-major (f:0 of every hash, then f:1...)"
echo "  sets:    $COLLS sets x $PER members: SADD s:I m:J, member-major"
echo "measure: VmRSS from /proc/PID/status; Redis also INFO memory used_memory; per element = per key, field or member"

# elems SHAPE: how many elements the shape loads (the replies --pipe must see).
elems() {
  case $1 in
    strings | expiring) echo "$KEYS" ;;
    *) echo $((COLLS * PER)) ;;
  esac
}

# keys_of SHAPE: how many keys the shape loads.
keys_of() {
  case $1 in
    strings | expiring) echo "$KEYS" ;;
    *) echo "$COLLS" ;;
  esac
}

# gen SHAPE: the shape's RESP on stdout.
gen() {
  case $1 in
    strings) gen_sets "$KEYS" r ;;
    expiring) gen_sets "$KEYS" r 86400 ;;
    hashes) gen_hsets "$COLLS" "$PER" "$HVAL" v ;;
    sets) gen_sadds "$COLLS" "$PER" ;;
  esac
}

# load SHAPE PORT: pipes the shape into PORT; prints the seconds it took; fails on any error reply.
load() {
  local t0 t1 out n
  n=$(elems "$1")
  t0=$(date +%s.%N)
  out=$(gen "$1" | redis-cli -p "$2" --pipe 2>&1 | tail -1)
  t1=$(date +%s.%N)
  echo "$out" | grep -q "errors: 0, replies: $n" || { echo "load into $2 failed: $out" >&2; return 1; }
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}'
}

used_memory() { redis-cli -p "$1" info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}'; }

# settled SHAPE: waits (60 s at most) until every node holds the whole load. The third replica of each write
# may still be in flight when the pipe ends. Strings, expiring or not: every node counts KEYS keys. Hashes and
# sets: every node counts COLLS keys and the three store estimates (INFO used_memory: entries, cells and their elements) are
# equal and unchanged for 0.5 s.
settled() {
  local i full last="" now
  for _ in $(seq 600); do
    full=0
    now=""
    for i in 1 2 3; do
      [ "$(info_keys $((RINGKV_BASE + i)))" -ge "$(keys_of "$1")" ] &&
        full=$((full + 1))
      now+="$(used_memory $((RINGKV_BASE + i))) "
    done
    if [ "$full" = 3 ]; then
      case $1 in strings | expiring) return 0 ;; esac
      [ "$(echo "$now" | tr ' ' '\n' | grep . | sort -u | wc -l)" = 1 ] && [ "$now" = "$last" ] && return 0
    fi
    last=$now
    sleep 0.5
  done
  echo "ringkv: the nodes did not settle in 60 s (used_memory: $now); measuring anyway" >&2
}

# run_shape SHAPE: one fresh cluster and one fresh redis-server, loaded and measured.
run_shape() {
  local shape=$1 n pids before=() pid rss keys row rows=() secs i
  n=$(elems "$shape")
  echo
  echo "=== $shape: $n elements"
  # --- ringkv
  ringkv_ports_free "$RINGKV_BASE" 3
  start_ringkv "$RINGKV_BASE" "$WORK/ringkv-$shape" 3
  read -r -a pids <<<"$(ringkv_pids "$WORK/ringkv-$shape")"
  sleep 5 # past the start-up anti-entropy rounds
  for pid in "${pids[@]}"; do before+=("$(rss_kb "$pid")"); done
  secs=$(load "$shape" $((RINGKV_BASE + 1)))
  echo "ringkv: loaded $n elements through node 1 in $secs s ($(awk -v k="$n" -v s="$secs" 'BEGIN {printf "%.0f", k / s}') writes/s)"
  settled "$shape"
  sleep 3 # let the commit log's interval fsync and any allocator purging pass
  echo
  echo "| ringkv node | keys held | store estimate (INFO used_memory) / element | RSS empty | RSS loaded | RSS / element | (loaded - empty) / element |"
  echo "|---|---|---|---|---|---|---|"
  for i in 0 1 2; do
    pid=${pids[$i]}
    keys=$(info_keys $((RINGKV_BASE + i + 1)))
    est=$(used_memory $((RINGKV_BASE + i + 1)))
    rss=$(rss_kb "$pid")
    row=$(awk -v nm="n$((i + 1))" -v k="$keys" -v b="${before[$i]}" -v r="$rss" -v n="$n" -v e="$est" 'BEGIN {
      printf "%s %d %.1f %.1f %.1f %.1f %.1f", nm, k, b / 1024, r / 1024, r * 1024 / n, (r - b) * 1024 / n, e / n }')
    rows+=("$row")
    echo "$row" | awk '{printf "| %s | %d | %.1f B | %.1f MiB | %.1f MiB | %.1f B | %.1f B |\n", $1, $2, $7, $3, $4, $5, $6}'
  done
  printf '%s\n' "${rows[@]}" | awk -v n="$n" '{b += $3; r += $4} END {
    printf "| all three | | | %.1f MiB | %.1f MiB | %.1f B | %.1f B |\n", b, r, r * 1048576 / n, (r - b) * 1048576 / n }'
  grep -h "VmRSS\|RssAnon\|RssFile" "/proc/${pids[0]}/status" | tr -s ' \t' ' ' | paste -sd';' | sed 's/^/ringkv n1: /'
  stop_last

  # --- redis
  local redis_pid used0 rss0 used enc
  rm -rf "$WORK/redis-$shape"
  start_redis "$REDIS_PORT" "$WORK/redis-$shape"
  redis_pid=${PIDS[-1]}
  used0=$(used_memory "$REDIS_PORT")
  rss0=$(rss_kb "$redis_pid")
  secs=$(load "$shape" "$REDIS_PORT")
  sleep 1
  keys=$(info_keys "$REDIS_PORT")
  used=$(used_memory "$REDIS_PORT")
  rss=$(rss_kb "$redis_pid")
  case $shape in
    strings | expiring) enc=$(redis-cli -p "$REDIS_PORT" object encoding key:0) ;;
    hashes) enc=$(redis-cli -p "$REDIS_PORT" object encoding h:0) ;;
    sets) enc=$(redis-cli -p "$REDIS_PORT" object encoding s:0) ;;
  esac
  echo
  echo "redis: loaded $n elements in $secs s; encoding of the first key: $enc"
  redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' |
    grep -E '^(used_memory|used_memory_rss|mem_fragmentation_ratio|mem_allocator):' | paste -sd' '
  echo
  echo "| redis-server | keys | elements | used_memory | used_memory / element | (used - empty) / element | RSS | RSS / element |"
  echo "|---|---|---|---|---|---|---|---|"
  awk -v k="$keys" -v n="$n" -v u="$used" -v u0="$used0" -v r="$rss" 'BEGIN {
    printf "| one instance | %d | %d | %.1f MiB | %.1f B | %.1f B | %.1f MiB | %.1f B |\n",
      k, n, u / 1048576, u / n, (u - u0) / n, r / 1024, r * 1024 / n }'
  echo "(redis RSS empty: $((rss0 / 1024)) MiB, used_memory empty: $((used0 / 1024)) KiB)"
  echo
  for row in "${rows[@]}"; do
    echo "$row" | awk -v u="$used" -v n="$n" -v r="$rss" '{
      printf "ringkv %s: RSS/element over Redis used_memory/element %.2fx, over Redis RSS/element %.2fx\n",
        $1, $5 / (u / n), $5 / (r * 1024 / n) }'
  done
  # shape n1 n2 n3 (RSS B/element) total(MiB) redis_used/element redis_rss/element
  printf '%s\n' "${rows[@]}" | awk -v s="$shape" -v n="$n" -v u="$used" -v r="$rss" '
    {x[NR] = $5; t += $4} END {printf "%s %d %.1f %.1f %.1f %.1f %.1f %.1f\n", s, n, x[1], x[2], x[3], t, u / n, r * 1024 / n}' \
    >>"$SUMMARY"
  stop_last
}

for s in "${SHAPES[@]}"; do run_shape "$s"; done

echo
echo "summary (B per element; ratio = each ringkv node's RSS over Redis's used_memory; issue 15's target: <= 1.5x)"
echo "| shape | elements | ringkv n1 / n2 / n3 RSS | ringkv 3 nodes RSS | Redis used_memory | Redis RSS | ringkv RSS / Redis used_memory |"
echo "|---|---|---|---|---|---|---|"
awk '{printf "| %s | %d | %.1f / %.1f / %.1f B | %.1f MiB | %.1f B | %.1f B | %.2fx / %.2fx / %.2fx |\n",
  $1, $2, $3, $4, $5, $6, $7, $8, $3 / $7, $4 / $7, $5 / $7}' "$SUMMARY"
