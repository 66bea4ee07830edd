#!/usr/bin/env bash
# Issue 16: what RESP3 costs. redis-benchmark in RESP2 and, with -3, in RESP3 (HELLO 3 on every connection),
# SET and GET pipelined, against ringkv (node 1 of 3) and one redis-server in the same run.
#
#   bench/resp3.sh                   # 3 repetitions of runs of about 4 s (about 3 minutes on 2 cores)
#   REPS=1 SECS=0.5 bench/resp3.sh   # a smoke test
#
# Starts one redis-server without persistence on 16389 and `ringkv up --nodes 3 --base-port 18300` (clients
# 18301-18303, default settings), and drives each with redis-benchmark -c 50 -d 64 -r 100000 -t set,get
# -P P [-3], for P in $PIPELINES (default "16 1"). Medians of REPS repetitions, then the RESP3/RESP2 ratio.
source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need redis-cli redis-tools
need redis-benchmark redis-tools
build_release

WORK=${WORK:-/tmp/ringkv-bench-resp3}
REPS=${REPS:-3}
SECS=${SECS:-4}
REDIS_PORT=${REDIS_PORT:-16389}
RINGKV_BASE=${RINGKV_BASE:-18300}
PIPELINES=${PIPELINES:-"16 1"}
COMMON=(-c 50 -d 64 -r 100000)
rm -rf "$WORK"; mkdir -p "$WORK"
RESULTS="$WORK/results.txt"
: >"$RESULTS"

machine_long
echo "load: redis-benchmark ${COMMON[*]} -t set,get -P {$PIPELINES} -n N --csv [-3], -p $REDIS_PORT (redis) | -p $((RINGKV_BASE + 1)) (ringkv)"

start_redis "$REDIS_PORT" "$WORK/redis"
ringkv_ports_free "$RINGKV_BASE" 3
start_ringkv "$RINGKV_BASE" "$WORK/ringkv" 3

port_of() { if [ "$1" = redis ]; then echo "$REDIS_PORT"; else echo $((RINGKV_BASE + 1)); fi; }
proto_args() { if [ "$1" = 3 ]; then echo "-3"; fi; }

# Calibration (also a warm-up): -n for runs of at least SECS seconds per test.
declare -A N
for p in $PIPELINES; do
  for sys in redis ringkv; do
    cal=$(( p == 1 ? 10000 : 100000 ))
    # shellcheck disable=SC2046
    rps=$(rb -p "$(port_of "$sys")" "${COMMON[@]}" -t set,get -P "$p" -n "$cal" | awk '$2 > m {m = $2} END {print m}')
    N[$sys,$p]=$(awk -v r="$rps" -v s="$SECS" -v p="$p" 'BEGIN {n = int(r * s / 1000) * 1000; min = p * 1000; print (n < min ? min : n)}')
    echo "calibration: $sys -P $p: $rps ops/s => -n ${N[$sys,$p]}"
  done
done

for rep in $(seq "$REPS"); do
  for p in $PIPELINES; do
    for sys in redis ringkv; do
      for proto in 2 3; do
        # shellcheck disable=SC2046
        rb -p "$(port_of "$sys")" "${COMMON[@]}" -t set,get -P "$p" -n "${N[$sys,$p]}" $(proto_args "$proto") |
          while read -r t rps p50 p99; do
            echo "$rep $sys $p $proto $t $rps $p50 $p99" | tee -a "$RESULTS"
          done
      done
    done
  done
done

echo
echo "medians of $REPS repetitions (ops/s, p50 / p99 ms)"
python3 - "$RESULTS" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for key in {tuple(r[1:5]) for r in rows}:
    sel = [r for r in rows if tuple(r[1:5]) == key]
    med[key] = tuple(st.median(float(r[i]) for r in sel) for i in (5, 6, 7))
def cell(k):
    if k not in med: return "-"
    r, p50, p99 = med[k]
    return f"{r:,.0f} ({p50:.2f} / {p99:.2f})"
def ratio(a, b):
    return f"{med[a][0] / med[b][0]:.2f}x" if a in med and b in med and med[b][0] else "-"
print("| test | -P | Redis RESP2 | Redis RESP3 | ringkv RESP2 | ringkv RESP3 | ringkv RESP3/RESP2 | Redis RESP3/RESP2 |")
print("|---|---|---|---|---|---|---|---|")
for p in sorted({r[2] for r in rows}, key=int, reverse=True):
    for t in ("SET", "GET"):
        k = lambda s, v: (s, p, v, t)
        print(f"| {t} | {p} | {cell(k('redis','2'))} | {cell(k('redis','3'))} | {cell(k('ringkv','2'))} | "
              f"{cell(k('ringkv','3'))} | {ratio(k('ringkv','3'), k('ringkv','2'))} | {ratio(k('redis','3'), k('redis','2'))} |")
PY
echo "raw results: $RESULTS"
