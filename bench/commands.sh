#!/usr/bin/env bash
# Issue 19: pipelined throughput of many commands through one coordinator, and the socket writes each costs,
# to find a command whose pipeline is served one round trip at a time.
#
#   bench/commands.sh                 # 3 nodes, -P 16, 100,000 of each command (about 1 minute)
#   N=300000 P=64 bench/commands.sh
#
# Starts `ringkv up --nodes 3 --base-port BASE -- --set worker_threads=1`, loads it with 300,000 SETs, HSETs
# and SADDs (redis-benchmark -t set,hset,sadd -c 50 -P 16 -d 64 -r 100000), then drives node 1 with
# `redis-benchmark -c 50 -P P -n N -r 100000 COMMAND` for each command below, counting the machine's
# `sendto` calls with `perf stat -a`. A command whose replies are written one at a time shows about 1,000+
# sends per 1,000 requests; batched replies and peer frames, 100 to 250. Keys named miss:, nx:, gd: and
# the like were never written, so those commands find nothing (or create the key).
source "$(dirname "$0")/lib.sh"
need redis-benchmark redis-tools
need redis-cli redis-tools
need perf linux-perf
build_release

WORK=${WORK:-/tmp/ringkv-bench-commands}
BASE=${BASE:-19300}
N=${N:-100000}
P=${P:-16}
machine_long
echo "load: redis-benchmark -c 50 -P $P -n $N -d 64 -r 100000 COMMAND against node 1 of 3 (worker_threads=1)"

ringkv_ports_free "$BASE" 3
start_ringkv "$BASE" "$WORK" 3 --set worker_threads=1
redis-benchmark -p $((BASE + 1)) -t set,hset,sadd -c 50 -P 16 -n 300000 -d 64 -r 100000 -q >/dev/null

echo
echo "| command | ops/s | sendto per 1,000 requests (machine-wide) |"
echo "|---|---|---|"
while IFS= read -r cmd; do
  # shellcheck disable=SC2086
  rps=$(perf stat -a -e syscalls:sys_enter_sendto -o "$WORK/perf.txt" -- \
    redis-benchmark -p $((BASE + 1)) -c 50 -P "$P" -n "$N" -d 64 -r 100000 --csv $cmd 2>/dev/null |
    tr -d '"' | awk -F, 'NR == 2 {print $2}')
  sends=$(awk -v n="$N" '/sendto/ {gsub(",", "", $1); printf "%.0f", $1 * 1000 / n}' "$WORK/perf.txt")
  printf '| `%s` | %.0f | %s |\n' "${cmd//__rand_int__/N}" "$rps" "$sends"
done <<'CMDS'
GET key:__rand_int__
GET miss:__rand_int__
EXISTS key:__rand_int__
EXISTS miss:__rand_int__
MGET key:__rand_int__ key:__rand_int__ miss:__rand_int__
TTL key:__rand_int__
TYPE key:__rand_int__
STRLEN key:__rand_int__
HGET myhash element:__rand_int__
HGET miss:__rand_int__ f
SISMEMBER myset element:__rand_int__
SET nx:__rand_int__ v NX
SET key:__rand_int__ v XX
SETNX key:__rand_int__ v
GETDEL gd:__rand_int__
GETEX key:__rand_int__ EX 100
APPEND app:__rand_int__ x
EXPIRE key:__rand_int__ 1000
DEL del:__rand_int__
INCR counter:__rand_int__
HINCRBY h:__rand_int__ f 1
HINCRBYFLOAT hf:__rand_int__ f 1.5
HSETNX hn:__rand_int__ f v
SREM myset element:__rand_int__
CMDS
stop_last
