#!/usr/bin/env bash
# Issue 7: ringkv side by side with one redis-server and a 6-instance Redis Cluster, on this machine, in one run.
#
#   bench/compare.sh                  # 3 repetitions, runs of 4 s and more (about 5 minutes on 2 cores)
#   REPS=1 SECS=0.5 bench/compare.sh  # a smoke test
#
# Starts (a) one redis-server without persistence on 16379, (b) a Redis Cluster of 6 instances (3 masters,
# 3 replicas) on 6401-6406, (c) `ringkv up --nodes 3 --base-port 18000` (clients 18001-18003, default
# settings and quorums), and drives each with redis-benchmark -c 50 -d 64 -r 100000 -t set,get, with -P 1
# and -P 16 (--cluster for Redis Cluster). Also drives the three ringkv nodes at once, one redis-benchmark
# per node (run per test, so the three SET phases and the three GET phases overlap), and sums their ops/s.
# Issue 19's single-node rows: (d) one redis-server with `--appendonly yes --appendfsync everysec` on 16380
# (the peer for ringkv's SET, which logs every write and fsyncs every second), and (e) one ringkv node alone
# (`ringkv up --nodes 1 --base-port 18500 -- --set worker_threads=1`: no replicas, one worker thread), so the
# request path alone is compared with one Redis on one core. SYSTEMS limits the run (e.g. SYSTEMS="redis
# redis_aof ringkv1" for the single-node rows only).
# Each (system, -P) pair is first measured once on a short run to choose -n for runs of at least SECS seconds;
# then every repetition runs every pair in turn, and the table gives medians. Every server is stopped by pid.
source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need redis-cli redis-tools
need redis-benchmark redis-tools
build_release

WORK=${WORK:-/tmp/ringkv-bench-compare}
REPS=${REPS:-3}
SECS=${SECS:-4}
REDIS_PORT=${REDIS_PORT:-16379}
REDIS_AOF_PORT=${REDIS_AOF_PORT:-16380}
RINGKV1_BASE=${RINGKV1_BASE:-18500}
SYSTEMS=${SYSTEMS:-"redis redis_aof cluster ringkv ringkv3 ringkv1"}
CLUSTER_PORT=${CLUSTER_PORT:-6401}   # cluster bus ports +10000: 16401-16406
RINGKV_BASE=${RINGKV_BASE:-18000}
COMMON=(-c 50 -d 64 -r 100000)
rm -rf "$WORK"; mkdir -p "$WORK"
RESULTS="$WORK/results.txt"
: >"$RESULTS"

machine_long
cat <<EOF
servers:
  redis:   redis-server --port $REDIS_PORT --save '' --appendonly no
  cluster: 6 x redis-server --port $CLUSTER_PORT..$((CLUSTER_PORT + 5)) --cluster-enabled yes --save '' --appendonly no,
           redis-cli --cluster create 127.0.0.1:$CLUSTER_PORT ... 127.0.0.1:$((CLUSTER_PORT + 5)) --cluster-replicas 1 --cluster-yes
  redis_aof: redis-server --port $REDIS_AOF_PORT --save '' --appendonly yes --appendfsync everysec
  ringkv:  $RINGKV up --nodes 3 --base-port $RINGKV_BASE --data-dir $WORK/ringkv   (defaults: N=3, R=2, W=2)
  ringkv1: $RINGKV up --nodes 1 --base-port $RINGKV1_BASE --data-dir $WORK/ringkv1 -- --set worker_threads=1
systems measured: $SYSTEMS
load: redis-benchmark ${COMMON[*]} -t set,get -P {1,16} -n N --csv, with -p $REDIS_PORT | --cluster -p $CLUSTER_PORT |
      -p $((RINGKV_BASE + 1)); ringkv x3: one redis-benchmark ${COMMON[*]} -t {set|get} per node $((RINGKV_BASE + 1))-$((RINGKV_BASE + 3)) at once
repetitions: $REPS; target run length: ${SECS} s per test
EOF

has() { [[ " $SYSTEMS " == *" $1 "* ]]; }
has redis && start_redis "$REDIS_PORT" "$WORK/redis"
has redis_aof && start_redis "$REDIS_AOF_PORT" "$WORK/redis_aof" --appendonly yes --appendfsync everysec
has cluster && start_redis_cluster "$CLUSTER_PORT" "$WORK/cluster"
if has ringkv || has ringkv3; then
  ringkv_ports_free "$RINGKV_BASE" 3
  start_ringkv "$RINGKV_BASE" "$WORK/ringkv" 3
fi
if has ringkv1; then
  ringkv_ports_free "$RINGKV1_BASE" 1
  start_ringkv "$RINGKV1_BASE" "$WORK/ringkv1" 1 --set worker_threads=1
fi
echo "all servers up: pids ${PIDS[*]}"

target_args() {
  case $1 in
    redis) echo "-p $REDIS_PORT" ;;
    redis_aof) echo "-p $REDIS_AOF_PORT" ;;
    ringkv1) echo "-p $((RINGKV1_BASE + 1))" ;;
    cluster) echo "--cluster -p $CLUSTER_PORT" ;;
    ringkv) echo "-p $((RINGKV_BASE + 1))" ;;
  esac
}

# one SYSTEM P N: "TEST RPS P50 P99" lines for SET and GET.
one() {
  # shellcheck disable=SC2046
  rb $(target_args "$1") "${COMMON[@]}" -t set,get -P "$2" -n "$3"
}

# all3 P N: the three ringkv nodes at once, per test; "TEST SUM_RPS MEDIAN_P50 MAX_P99".
all3() {
  local p=$1 n=$2 t i pids
  for t in set get; do
    pids=()
    for i in 1 2 3; do
      rb -p $((RINGKV_BASE + i)) "${COMMON[@]}" -t "$t" -P "$p" -n "$n" >"$WORK/all3.$i" &
      pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    # Sum of ops/s, median p50, worst p99 of the three.
    sort -k3,3n "$WORK"/all3.[123] | awk '{s += $2; if (NR == 2) p50 = $3; if ($4 > m) m = $4; name = $1}
      END {printf "%s %.2f %s %s\n", name, s, p50, m}'
  done
}

run() { if [ "$1" = ringkv3 ]; then all3 "$2" "$3"; else one "$1" "$2" "$3"; fi; }

# Calibration: one short run per pair (also a warm-up), then -n for at least SECS seconds per test
# (sized on the faster of SET and GET).
declare -A N
for p in 1 16; do
  for sys in $SYSTEMS; do
    cal=$(( p == 1 ? 10000 : 100000 ))
    rps=$(run "$sys" "$p" "$cal" | awk '$2 > m {m = $2} END {print m}')
    [ "$sys" = ringkv3 ] && rps=$(awk -v r="$rps" 'BEGIN {print r / 3}')
    N[$sys,$p]=$(awk -v r="$rps" -v s="$SECS" -v p="$p" 'BEGIN {n = int(r * s / 1000) * 1000; min = p * 1000; print (n < min ? min : n)}')
    echo "calibration: $sys -P $p: $rps ops/s on -n $cal => -n ${N[$sys,$p]}"
  done
done

for rep in $(seq "$REPS"); do
  for p in 1 16; do
    for sys in $SYSTEMS; do
      run "$sys" "$p" "${N[$sys,$p]}" | while read -r t rps p50 p99; do
        echo "$rep $sys $p $t $rps $p50 $p99" | tee -a "$RESULTS"
      done
    done
  done
done

echo
echo "medians of $REPS repetitions (ops/s, p50 / p99 ms); ringkv = node 1 of 3; x3 = the three nodes at once, summed"
python3 - "$RESULTS" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for key in {(r[1], r[2], r[3]) for r in rows}:
    sel = [r for r in rows if (r[1], r[2], r[3]) == key]
    med[key] = tuple(st.median(float(r[i]) for r in sel) for i in (4, 5, 6))
def cell(k):
    if k not in med: return "-"
    r, p50, p99 = med[k]
    return f"{r:,.0f} ({p50:.2f} / {p99:.2f})"
def ratio(a, b):
    return f"{med[a][0] / med[b][0]:.2f}x" if a in med and b in med and med[b][0] else "-"
print("| test | -P | Redis | Redis Cluster | ringkv | ringkv/Redis | ringkv/Cluster | ringkv x3 (sum) | x3/Redis | x3/Cluster |")
print("|---|---|---|---|---|---|---|---|---|---|")
for p in ("1", "16"):
    for t in ("SET", "GET"):
        k = lambda s: (s, p, t)
        print(f"| {t} | {p} | {cell(k('redis'))} | {cell(k('cluster'))} | {cell(k('ringkv'))} | "
              f"{ratio(k('ringkv'), k('redis'))} | {ratio(k('ringkv'), k('cluster'))} | {cell(k('ringkv3'))} | "
              f"{ratio(k('ringkv3'), k('redis'))} | {ratio(k('ringkv3'), k('cluster'))} |")
print()
print("one node, no replicas (ringkv1: one worker thread); SET against Redis with appendfsync everysec, GET against Redis:")
print("| test | -P | Redis | Redis AOF everysec | ringkv, 1 node | ringkv1/Redis | ringkv1/Redis AOF |")
print("|---|---|---|---|---|---|---|")
for p in ("16", "1"):
    for t in ("SET", "GET"):
        k = lambda s: (s, p, t)
        print(f"| {t} | {p} | {cell(k('redis'))} | {cell(k('redis_aof'))} | {cell(k('ringkv1'))} | "
              f"{ratio(k('ringkv1'), k('redis'))} | {ratio(k('ringkv1'), k('redis_aof'))} |")
PY
echo "raw results: $RESULTS"
