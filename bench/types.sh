#!/usr/bin/env bash
# Issue 15: the new types' speed. redis-benchmark against node 1 of a 3-node ringkv cluster and against one
# redis-server, in one run: SET, INCR, HSET, HGET and SADD at -P 1 and -P 16, -c 50 -d 64 -r 100000; the table
# gives ops/s for both, and each ringkv command's ratio to ringkv's own SET at the same -P (issue 15's target:
# INCR, HSET, HGET and SADD each at least 0.8x of SET).
#
#   bench/types.sh                  # 3 repetitions, runs of 3 s and more (about 4 minutes on 2 cores)
#   REPS=1 SECS=0.5 bench/types.sh  # a smoke test
#   SPREAD=0 bench/types.sh         # without the two many-key rows (HSET, SADD over 100,000 keys)
#   ONLY="SET INCR" bench/types.sh  # only these tests (keep SET: the ratios are to it)
#   CLIENTS=1 ONLY="SET INCR" SPREAD=0 bench/types.sh   # one client: latency, round trips in a row
#
# The tests, as redis-benchmark 7.0 has them (`-t` uses one key for HSET and SADD):
#   SET  -t set    SET key:__rand_int__ <64 bytes>         100,000 keys
#   INCR -t incr   INCR counter:__rand_int__               100,000 keys
#   HSET -t hset   HSET myhash element:__rand_int__ <64 bytes>   one key, 100,000 fields
#   HGET           HGET myhash element:__rand_int__        one key; every field preloaded (hits only)
#   SADD -t sadd   SADD myset element:__rand_int__         one key, 100,000 members
# and with SPREAD=1 (the default), the same writes over many keys (each __rand_int__ is drawn on its own):
#   HSET*          HSET h:__rand_int__ f:__rand_int__ <16 bytes>
#   SADD*          SADD s:__rand_int__ m:__rand_int__
# Before the runs, myhash is loaded with its 100,000 fields element:000000000000.. (64-byte values) through
# redis-cli --pipe, on both systems. Each (system, test, -P) is first run once briefly to choose -n for runs of
# at least SECS seconds; then every repetition runs every triple in turn, and the table gives medians.
source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need redis-cli redis-tools
need redis-benchmark redis-tools
build_release

WORK=${WORK:-/tmp/ringkv-bench-types}
REPS=${REPS:-3}
SECS=${SECS:-3}
SPREAD=${SPREAD:-1}
REDIS_PORT=${REDIS_PORT:-16579}
RINGKV_BASE=${RINGKV_BASE:-18900}
CLIENTS=${CLIENTS:-50}
COMMON=(-c "$CLIENTS" -d 64 -r 100000)
if [ -n "${ONLY:-}" ]; then
  read -r -a TESTS <<<"$ONLY"
else
  TESTS=(SET INCR HSET HGET SADD)
  [ "$SPREAD" = 1 ] && TESTS+=("HSET*" "SADD*")
fi
rm -rf "$WORK"; mkdir -p "$WORK"
RESULTS="$WORK/results.txt"
: >"$RESULTS"

machine_long
cat <<EOF
servers:
  redis:   redis-server --port $REDIS_PORT --save '' --appendonly no
  ringkv:  $RINGKV up --nodes 3 --base-port $RINGKV_BASE --data-dir $WORK/ringkv   (defaults: N=3, R=2, W=2)
load: redis-benchmark --csv ${COMMON[*]} -P {1,16} -n N {-t set | -t incr | -t hset | HGET myhash element:__rand_int__ |
      -t sadd$([ "$SPREAD" = 1 ] && echo " | HSET h:__rand_int__ f:__rand_int__ 0123456789abcdef | SADD s:__rand_int__ m:__rand_int__")},
      with -p $REDIS_PORT | -p $((RINGKV_BASE + 1))
repetitions: $REPS; target run length: ${SECS} s per test
EOF

start_redis "$REDIS_PORT" "$WORK/redis"
ringkv_ports_free "$RINGKV_BASE" 3
start_ringkv "$RINGKV_BASE" "$WORK/ringkv" 3
echo "all servers up: redis pid ${PIDS[0]}, ringkv up pid ${PIDS[1]} (nodes $(ringkv_pids "$WORK/ringkv"))"
sleep 3 # past the start-up anti-entropy rounds

# gen_myhash: HSET myhash element:<12 digits> <64 bytes> for 0..99999, redis-benchmark's field names.
gen_myhash() {
  python3 - <<'PY'
import sys
out = sys.stdout.buffer
val = b"x" * 64
out.write(b"".join(b"*4\r\n$4\r\nHSET\r\n$6\r\nmyhash\r\n$20\r\nelement:%012d\r\n$64\r\n%s\r\n" % (i, val)
                   for i in range(100000)))
PY
}
for port in "$REDIS_PORT" $((RINGKV_BASE + 1)); do
  out=$(gen_myhash | redis-cli -p "$port" --pipe 2>&1 | tail -1)
  echo "$out" | grep -q "errors: 0, replies: 100000" || { echo "preload into $port failed: $out" >&2; exit 1; }
  echo "preloaded myhash on $port: HLEN $(redis-cli -p "$port" hlen myhash)"
done

port_of() { case $1 in redis) echo "$REDIS_PORT" ;; ringkv) echo $((RINGKV_BASE + 1)) ;; esac; }

# test_args TEST: redis-benchmark's arguments for one test.
test_args() {
  case $1 in
    SET) echo "-t set" ;;
    INCR) echo "-t incr" ;;
    HSET) echo "-t hset" ;;
    HGET) echo "HGET myhash element:__rand_int__" ;;
    SADD) echo "-t sadd" ;;
    "HSET*") echo "HSET h:__rand_int__ f:__rand_int__ 0123456789abcdef" ;;
    "SADD*") echo "SADD s:__rand_int__ m:__rand_int__" ;;
  esac
}

# one SYSTEM TEST P N: "RPS P50 P99" of one run (the last three fields of rb's line; a custom command's
# test name has spaces).
one() {
  # shellcheck disable=SC2046
  rb -p "$(port_of "$1")" "${COMMON[@]}" -P "$3" -n "$4" $(test_args "$2") | awk '{print $(NF-2), $(NF-1), $NF}'
}

# Calibration: one short run per triple (also a warm-up), then -n for at least SECS seconds.
declare -A N
for p in 1 16; do
  for t in "${TESTS[@]}"; do
    for sys in redis ringkv; do
      cal=$(( p == 1 ? 10000 : 50000 ))
      rps=$(one "$sys" "$t" "$p" "$cal" | awk '{print $1}')
      N[$sys,$t,$p]=$(awk -v r="$rps" -v s="$SECS" -v p="$p" 'BEGIN {n = int(r * s / 1000) * 1000; min = p * 1000; print (n < min ? min : n)}')
      echo "calibration: $sys $t -P $p: $rps ops/s on -n $cal => -n ${N[$sys,$t,$p]}"
    done
  done
done

for rep in $(seq "$REPS"); do
  for p in 1 16; do
    for t in "${TESTS[@]}"; do
      for sys in redis ringkv; do
        one "$sys" "$t" "$p" "${N[$sys,$t,$p]}" | while read -r rps p50 p99; do
          echo "$rep $sys $p $t $rps $p50 $p99" | tee -a "$RESULTS"
        done
      done
    done
  done
done

echo
echo "medians of $REPS repetitions (ops/s, p50 / p99 ms); ringkv = node 1 of 3; * = over 100,000 keys, not one"
python3 - "$RESULTS" "${TESTS[@]}" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
tests = sys.argv[2:]
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
print("| test | -P | Redis | ringkv | ringkv/Redis | ringkv / ringkv SET | >= 0.8x |")
print("|---|---|---|---|---|---|---|")
for p in ("16", "1"):
    for t in tests:
        k = lambda s: (s, p, t)
        r = ratio(k("ringkv"), ("ringkv", p, "SET"))
        ok = "" if t == "SET" or r == "-" else ("yes" if float(r[:-1]) >= 0.8 else "**no**")
        print(f"| {t} | {p} | {cell(k('redis'))} | {cell(k('ringkv'))} | {ratio(k('ringkv'), k('redis'))} | "
              f"{'' if t == 'SET' else r} | {ok} |")
PY
echo "raw results: $RESULTS"
