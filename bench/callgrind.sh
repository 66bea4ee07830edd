#!/usr/bin/env bash
# Issue 7: instructions per request on the coordinator, counted by callgrind (repeatable to within a few
# percent, unlike ops/s on a shared 2-core machine), for A/B comparisons of the hot path.
#
#   bench/callgrind.sh                 # SET and GET, -P 16, 50,000 requests each
#   TESTS=get P=1 N=20000 bench/callgrind.sh
#   VG_NODE=2 bench/callgrind.sh       # count a replica (n2) instead; the load still goes to n1
#   RB_ARGS=-3 bench/callgrind.sh      # the measured load in RESP3 (redis-benchmark -3: HELLO 3 first)
#   NODES=1 bench/callgrind.sh         # one node alone (no replicas): the request path without peers
#   TESTS="hset sadd incr hget" bench/callgrind.sh   # the types (hget reads the hash -t hset loads first)
#   WARM_T=incr TESTS=incr bench/callgrind.sh   # warm up with INCRs too: increments of counters that exist
#   TESTS="hsetspread saddspread" bench/callgrind.sh   # HSET h:<r> f:<r> 16B and SADD s:<r> m:<r> (types.sh's HSET*, SADD*)
#   WARM_T=same TESTS=hsetspread bench/callgrind.sh    # warm up with the measured load itself (keys that exist)
#   VG_ARGS=--cache-sim=yes bench/callgrind.sh          # also simulate the caches (callgrind_annotate shows misses)
#
# Starts nodes n2 and n3 normally and n1 under `valgrind --tool=callgrind --instr-atstart=no`, all with
# worker_threads=1 and read_speculation_ms=200 (so valgrind's slowness does not trigger speculative reads);
# warms up with WARM (300,000) SETs, so GETs find their keys, then switches instrumentation on only around
# `redis-benchmark -p BASE+1 -t TEST -c 50 -P P -n N -d 64 -r 100000`, dumps, and prints the count / N.
# Under valgrind SHA-1 runs its portable code (~1,530 instructions a key), which overstates hashing.
source "$(dirname "$0")/lib.sh"
need valgrind valgrind
need callgrind_control valgrind
need redis-benchmark redis-tools
need redis-cli redis-tools
need curl curl
build_release

WORK=${WORK:-/tmp/ringkv-bench-callgrind}
BASE=${BASE:-18700}
VG_NODE=${VG_NODE:-1}
PROFILES=${PROFILES:-/tmp/ringkv-callgrind-profiles}   # one callgrind.out per test, kept after the run
TESTS=${TESTS:-"set get"}
P=${P:-16}
NODES=${NODES:-3}
N=${N:-50000}
FLAGS=(--set worker_threads=1 --set read_speculation_ms=200 ${NODE_FLAGS:-})

machine_long
echo "ringkv: $RINGKV (nodes n1..n$NODES on $((BASE + 1))..$((BASE + NODES)), n$VG_NODE under callgrind)"

# node I [wrapper...]: starts node nI in the background, recording its pid.
node() {
  local i=$1; shift
  local seeds=""
  for j in $(seq "$NODES"); do [ "$j" != "$i" ] && seeds+="127.0.0.1:$((BASE + 100 + j)),"; done
  local seed_args=()
  [ -n "$seeds" ] && seed_args=(--seeds "${seeds%,}")
  "$@" "$RINGKV" node --name "n$i" --client "127.0.0.1:$((BASE + i))" --peer "127.0.0.1:$((BASE + 100 + i))" \
    --admin "127.0.0.1:$((BASE + 200 + i))" --data-dir "$WORK/n$i" "${FLAGS[@]}" "${seed_args[@]}" \
    >"$WORK/n$i.log" 2>&1 &
  PIDS+=($!)
}

for t in $TESTS; do
  rm -rf "$WORK"; mkdir -p "$WORK"
  for i in $(seq "$NODES"); do
    [ "$i" != "$VG_NODE" ] && node "$i"
  done
  # shellcheck disable=SC2086
  node "$VG_NODE" valgrind --tool=callgrind --instr-atstart=no ${VG_ARGS:-} --callgrind-out-file="$WORK/callgrind.out"
  vg=${PIDS[-1]}
  for _ in $(seq 300); do
    redis-cli -p $((BASE + 1)) ping 2>/dev/null | grep -q PONG && break
    sleep 0.2
  done
  # Until every node sees the others, writes would go to fewer replicas.
  for _ in $(seq 100); do
    [ "$(redis-cli -p $((BASE + 1)) ringkv nodes 2>/dev/null | grep -c .)" -ge "$NODES" ] && break
    sleep 0.2
  done
  # Enough SETs that nearly every key of the 100,000 exists (95 %), so GETs measure hits, not misses.
  redis-benchmark -p $((BASE + 1)) -t set -c 50 -P 16 -n "${WARM:-300000}" -d 64 -r 100000 -q >/dev/null
  # hget is no -t test of redis-benchmark: HGET of the fields of the one hash `-t hset` writes, loaded first.
  load=(-t "$t")
  # A command of the spread rows of bench/types.sh (each __rand_int__ drawn on its own).
  case $t in
    hsetspread) load=(HSET h:__rand_int__ f:__rand_int__ 0123456789abcdef) ;;
    saddspread) load=(SADD s:__rand_int__ m:__rand_int__) ;;
  esac
  # WARM_T: a test whose keys to create too (the steady state of a long run, where most writes find their key);
  # WARM_T=same warms up with the measured load itself.
  if [ "${WARM_T:-}" = same ]; then
    redis-benchmark -p $((BASE + 1)) -c 50 -P 16 -n "${WARM:-300000}" -d 64 -r 100000 -q "${load[@]}" >/dev/null
  elif [ -n "${WARM_T:-}" ]; then
    redis-benchmark -p $((BASE + 1)) -t "$WARM_T" -c 50 -P 16 -n "${WARM:-300000}" -d 64 -r 100000 -q >/dev/null
  fi
  if [ "$t" = hget ]; then
    redis-benchmark -p $((BASE + 1)) -t hset -c 50 -P 16 -n "${WARM:-300000}" -d 64 -r 100000 -q >/dev/null
    load=(HGET myhash element:__rand_int__)
  fi
  # A replica under valgrind lags behind the warm-up (n1 needs only W acknowledgements): wait until it has
  # drained its backlog, fewer than 100 peer messages arriving in a second (heartbeats only), so the count
  # below is of the measured load, not of the warm-up's writes.
  if [ "$VG_NODE" != 1 ]; then
    received() {
      curl -s "http://127.0.0.1:$((BASE + 200 + VG_NODE))/metrics" |
        awk '/^ringkv_peer_messages_received_by_kind/ {s += $NF} END {printf "%d\n", s}'
    }
    last=$(received)
    # No counter read (a renamed metric, an admin port elsewhere) would make the wait a no-op: say so.
    [ "$last" -gt 0 ] || echo "warning: no peer_messages_received_by_kind on n$VG_NODE's /metrics; not waiting" >&2
    for _ in $(seq 300); do
      sleep 1
      now=$(received)
      [ $((now - last)) -lt 100 ] && break
      last=$now
    done
  fi
  callgrind_control -i on "$vg" >/dev/null 2>&1
  # shellcheck disable=SC2086
  redis-benchmark -p $((BASE + 1)) -c 50 -P "$P" -n "$N" -d 64 -r 100000 ${RB_ARGS:-} -q "${load[@]}" | tr '\r' '\n' | grep 'per second' || true
  callgrind_control -i off "$vg" >/dev/null 2>&1
  callgrind_control -d "$vg" >/dev/null 2>&1
  mkdir -p "$PROFILES"
  out="$PROFILES/$t-P$P$([ "$NODES" = 3 ] || echo "-$NODES""node")$([ "$VG_NODE" = 1 ] || echo "-n$VG_NODE")$([ -z "${RB_ARGS:-}" ] || echo "-resp3").out"
  cp "$WORK/callgrind.out.1" "$out"
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  what="the coordinator"
  [ "$VG_NODE" = 1 ] || what="replica n$VG_NODE"
  echo "$t -P $P${RB_ARGS:+ $RB_ARGS}: $((total / N)) instructions per request on $what (profile: $out)"
  cleanup
done
