#!/usr/bin/env bash
# Issue 7: where the CPU of one request goes, ringkv beside one redis-server, on this machine, in one run.
#
#   bench/cpu.sh                      # SET and GET, -P 1 and -P 16, 3 repetitions (about 3 minutes)
#   REPS=1 N1=50000 N16=200000 bench/cpu.sh
#   SYSTEMS="redis_repl ringkv" bench/cpu.sh   # only the primary-plus-replicas row and ringkv
#   TESTS="set incr hset" SYSTEMS=ringkv bench/cpu.sh   # other redis-benchmark tests (-t names)
#   TESTS="getmiss setget incrbyfloat" bench/cpu.sh     # commands of two rounds (see `load` below)
#
# On a 2-core machine the benchmark client and the servers share the cores, so throughput is set by the
# CPU time one request costs in total (client + servers) as much as by round trips. For each system and
# test this prints, per request, the user and system CPU microseconds of every server process and of
# redis-benchmark itself (from /proc/PID/stat and `time`), and the machine's idle time (from /proc/stat).
# Servers (SYSTEMS, all by default): `redis`, one redis-server without persistence on 16379; `redis_repl`,
# a Redis primary with appendfsync everysec and two replicas of it (replicaof) on 16380..16382, which, like
# ringkv, keeps three copies (asynchronously) and writes an AOF; `ringkv`, `ringkv up --nodes 3
# --base-port 18000` (defaults: N=3, R=2, W=2). Load: redis-benchmark -c 50 -d 64 -r 100000 -t TEST -P {1,16} -n N against
# the redis-server and ringkv node 1, after a warm-up of 300,000 SETs at -P 16 (so GETs mostly hit).
# Medians of REPS runs. Every server is stopped by pid.
source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need redis-benchmark redis-tools
need redis-cli redis-tools
build_release

WORK=${WORK:-/tmp/ringkv-bench-cpu}
REPS=${REPS:-3}
N1=${N1:-200000}
N16=${N16:-1000000}
REDIS_PORT=${REDIS_PORT:-16379}
REPL_PORT=${REPL_PORT:-16380}   # the primary; its replicas on the next two ports
SYSTEMS=${SYSTEMS:-"redis redis_repl ringkv"}
TESTS=${TESTS:-"set get"}
RINGKV_BASE=${RINGKV_BASE:-18000}
COMMON=(-c 50 -d 64 -r 100000)
TICK=$(getconf CLK_TCK)
rm -rf "$WORK"; mkdir -p "$WORK"
RESULTS="$WORK/results.txt"
: >"$RESULTS"

machine_long
echo "load: redis-benchmark ${COMMON[*]} -P {1,16} -n {$N1|$N16} {${TESTS// /|}}; $REPS repetitions, medians"

# ticks PID...: "user system" clock ticks of each pid, one line each.
ticks() { local p; for p in "$@"; do sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12, $13}'; done; }
idle_ticks() { awk '/^cpu / {print $5}' /proc/stat; }

# load TEST: redis-benchmark's arguments for TEST: a -t name, or one of these commands, whose coordinator
# takes two rounds on ringkv: getmiss (GETs of keys never written: a miss is confirmed by one more
# replica), setget (SET ... GET: a read, then the write) and incrbyfloat (a read, then the write).
load() {
  case $1 in
    getmiss) echo "GET miss:__rand_int__" ;;
    setget) echo "SET setget:__rand_int__ xxx GET" ;;
    incrbyfloat) echo "INCRBYFLOAT float:__rand_int__ 1.5" ;;
    *) echo "-t $1" ;;
  esac
}

# measure SYSTEM PORT TEST P N PID...: one run; appends "SYSTEM TEST P RPS NAME USER_US SYS_US" rows
# (names: the servers s1.., bench, idle) to RESULTS.
measure() {
  local sys=$1 port=$2 t=$3 p=$4 n=$5; shift 5
  local before after idle0 idle1 out rps
  before=$(ticks "$@"); idle0=$(idle_ticks)
  # shellcheck disable=SC2046
  out=$({ TIMEFORMAT='%U %S'; time redis-benchmark -p "$port" "${COMMON[@]}" -P "$p" -n "$n" --csv $(load "$t") \
    >"$WORK/rb.csv" 2>/dev/null; } 2>&1)
  after=$(ticks "$@"); idle1=$(idle_ticks)
  rps=$(tr -d '"' <"$WORK/rb.csv" | awk -F, 'NR == 2 {print $2}')
  paste <(echo "$before") <(echo "$after") | awk -v s="$sys" -v t="$t" -v p="$p" -v r="$rps" -v n="$n" -v k="$TICK" \
    '{printf "%s %s %s %s s%d %.2f %.2f\n", s, t, p, r, NR, ($3 - $1) * 1e6 / k / n, ($4 - $2) * 1e6 / k / n}' >>"$RESULTS"
  echo "$out" | awk -v s="$sys" -v t="$t" -v p="$p" -v r="$rps" -v n="$n" \
    '{printf "%s %s %s %s bench %.2f %.2f\n", s, t, p, r, $1 * 1e6 / n, $2 * 1e6 / n}' >>"$RESULTS"
  awk -v s="$sys" -v t="$t" -v p="$p" -v r="$rps" -v n="$n" -v k="$TICK" -v a="$idle0" -v b="$idle1" \
    'BEGIN {printf "%s %s %s %s idle %.2f 0\n", s, t, p, r, (b - a) * 1e6 / k / n}' >>"$RESULTS"
  echo "$sys $t -P $p: $rps ops/s"
}

warm() { redis-benchmark -p "$1" "${COMMON[@]}" -t set -P 16 -n 300000 -q >/dev/null 2>&1; }

has() { [[ " $SYSTEMS " == *" $1 "* ]]; }

# run_tests SYSTEM PORT PID...: warm up, then every test and pipeline depth against PORT.
run_tests() {
  local sys=$1 port=$2; shift 2
  warm "$port"
  for p in 1 16; do
    n=$([ "$p" = 1 ] && echo "$N1" || echo "$N16")
    for t in $TESTS; do measure "$sys" "$port" "$t" "$p" "$n" "$@"; done
  done
}

# wait_replicas PORT COUNT: until the primary on PORT has COUNT replicas online (synced, streaming).
wait_replicas() {
  for _ in $(seq 200); do
    [ "$(redis-cli -p "$1" info replication | grep -c 'state=online')" = "$2" ] && return 0
    sleep 0.1
  done
  echo "the replicas of $1 did not come online" >&2
  return 1
}

for rep in $(seq "$REPS"); do
  if has redis; then
    start_redis "$REDIS_PORT" "$WORK/redis"
    run_tests redis "$REDIS_PORT" "${PIDS[-1]}"
    stop_last
  fi
  if has redis_repl; then
    start_redis "$REPL_PORT" "$WORK/repl/primary" --appendonly yes --appendfsync everysec --repl-diskless-sync-delay 0
    repl=("${PIDS[-1]}")
    for i in 1 2; do
      start_redis $((REPL_PORT + i)) "$WORK/repl/replica$i" --replicaof 127.0.0.1 "$REPL_PORT"
      repl+=("${PIDS[-1]}")
    done
    wait_replicas "$REPL_PORT" 2
    run_tests redis_repl "$REPL_PORT" "${repl[@]}"
    stop_last; stop_last; stop_last
  fi
  if has ringkv; then
    ringkv_ports_free "$RINGKV_BASE" 3
    start_ringkv "$RINGKV_BASE" "$WORK/ringkv" 3
    # shellcheck disable=SC2046
    run_tests ringkv $((RINGKV_BASE + 1)) $(ringkv_pids "$WORK/ringkv")
    stop_last
  fi
done
echo
echo "CPU microseconds per request (user + system), medians of $REPS runs; s1 = redis-server, the Redis primary"
echo "or ringkv n1 (the coordinator), s2 s3 = the Redis replicas or ringkv n2 n3; idle = CPU time the machine"
echo "left unused, per request"
python3 - "$RESULTS" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
order = {"redis": 0, "redis_repl": 1, "ringkv": 2}
keys = sorted({(r[0], r[1], r[2]) for r in rows}, key=lambda k: (k[2] != "1", k[1] != "set", order.get(k[0], 3)))
print("| system | test | -P | ops/s | server(s) | redis-benchmark | idle | total |")
print("|---|---|---|---|---|---|---|---|")
for k in keys:
    sel = [r for r in rows if tuple(r[:3]) == k]
    rps = st.median(float(r[3]) for r in sel if r[4] == "idle")
    cell = lambda name: (st.median(float(r[5]) for r in sel if r[4] == name),
                         st.median(float(r[6]) for r in sel if r[4] == name))
    names = sorted({r[4] for r in sel if r[4].startswith("s")})
    servers = [cell(n) for n in names]
    bench, idle = cell("bench"), cell("idle")[0]
    total = sum(u + s for u, s in servers) + sum(bench) + idle
    srv = ", ".join(f"{n} {u:.1f}+{s:.1f}" for n, (u, s) in zip(names, servers))
    print(f"| {k[0]} | {k[1].upper()} | {k[2]} | {rps:,.0f} | {srv} | {bench[0]:.1f}+{bench[1]:.1f} | {idle:.1f} | {total:.1f} |")
# Issue 19's target: the servers' CPU per SET, 3 ringkv nodes against a Redis primary and 2 replicas.
def servers(k):
    sel = [r for r in rows if tuple(r[:3]) == k]
    names = {r[4] for r in sel if r[4].startswith("s")}
    return sum(st.median(float(r[5]) + float(r[6]) for r in sel if r[4] == n) for n in names)
for p in ("1", "16"):
    a, b = ("ringkv", "set", p), ("redis_repl", "set", p)
    if a in keys and b in keys:
        print(f"SET -P {p}: all server processes {servers(a):.1f} us (ringkv, 3 nodes) vs {servers(b):.1f} us "
              f"(Redis primary + 2 replicas, AOF everysec): {servers(a) / servers(b):.2f}x")
PY
echo "raw results: $RESULTS"
