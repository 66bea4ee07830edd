# Shared helpers for the bench scripts: build, start and stop local clusters.
# Sourced, not run. Every server started here is stopped by pid.

set -euo pipefail
BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RINGKV="${BENCH_RINGKV:-$BENCH_ROOT/target/release/ringkv}"
PIDS=()

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2 (for $1)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

build_release() {
  if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    (cd "$BENCH_ROOT" && cargo build --release -q)
  fi
}

cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT
# An interrupted run still stops its servers: INT/TERM exit, which runs the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

# start_ringkv BASE_PORT DATA_DIR N [node flags...]: a local cluster via `up`; waits for `ready`.
start_ringkv() {
  local base=$1 dir=$2 n=$3; shift 3
  rm -rf "$dir"; mkdir -p "$dir"
  "$RINGKV" up --nodes "$n" --base-port "$base" --data-dir "$dir" -- "$@" >"$dir/up.out" 2>"$dir/up.err" &
  PIDS+=($!)
  for _ in $(seq 300); do
    grep -q '^ready' "$dir/up.out" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "cluster did not become ready; see $dir" >&2
  return 1
}

# stop_last: stop the most recently started server (and, for `up`, its nodes).
stop_last() {
  local last=$(( ${#PIDS[@]} - 1 ))
  local pid=${PIDS[$last]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$last]"
  PIDS=("${PIDS[@]:-}")
}

# median: the median of the numbers on stdin, one a line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

machine() {
  echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr), $(date -u +%Y-%m-%d)"
}

# machine_long: the machine, the tools and the build, for a results header.
machine_long() {
  echo "machine: $(machine)"
  echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), nproc $(nproc)"
  echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); kernel: $(uname -srm)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  local build="external binary"
  if [ "$RINGKV" = "$BENCH_ROOT/target/release/ringkv" ]; then
    build="built from $(cd "$BENCH_ROOT" && git rev-parse --short HEAD 2>/dev/null)"
    (cd "$BENCH_ROOT" && git diff --quiet HEAD -- src Cargo.toml 2>/dev/null) || build="$build plus uncommitted src changes"
  fi
  echo "redis: $(redis-server --version 2>/dev/null | awk '{print $3}'); ringkv: $RINGKV ($build, $(stat -c %y "$RINGKV" | cut -d. -f1))"
}

# wait_ping PORT: until a RESP server answers PING on 127.0.0.1:PORT (10 s at most).
wait_ping() {
  for _ in $(seq 200); do
    [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "nothing answers PING on port $1" >&2
  return 1
}

# start_redis PORT DIR [redis-server flags...]: one redis-server without persistence, in the foreground of a
# background job (so its pid is ours); waits for PING.
start_redis() {
  local port=$1 dir=$2 pid; shift 2
  port_free "$port"
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --logfile "$dir/redis-$port.log" --daemonize no "$@" &
  pid=$!; PIDS+=($pid)
  wait_ping "$port"
  kill -0 "$pid" 2>/dev/null || { echo "redis-server on $port exited; see $dir" >&2; return 1; }
}

# port_free PORT...: fails when something already listens on one of the ports (a stale server would
# otherwise answer in place of the one started).
port_free() {
  local p
  for p in "$@"; do
    if ss -Htln "sport = :$p" | grep -q .; then
      echo "port $p is already in use; stop what listens there or choose other ports" >&2
      return 1
    fi
  done
}

# start_redis_cluster FIRST_PORT DIR: six cluster-mode redis-servers on FIRST_PORT..FIRST_PORT+5 (bus ports
# +10000), joined by `redis-cli --cluster create` as 3 masters with a replica each; waits for cluster_state:ok.
start_redis_cluster() {
  local first=$1 dir=$2 addrs=() p
  rm -rf "$dir"; mkdir -p "$dir"
  port_free $(seq $((first + 10000)) $((first + 10005)))
  for p in $(seq "$first" $((first + 5))); do
    mkdir -p "$dir/$p"
    start_redis "$p" "$dir/$p" --cluster-enabled yes --cluster-config-file "$dir/$p/nodes.conf" \
      --cluster-node-timeout 5000
    addrs+=("127.0.0.1:$p")
  done
  echo "+ redis-cli --cluster create ${addrs[*]} --cluster-replicas 1 --cluster-yes" >&2
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.out" 2>&1
  # Ready when every instance says cluster_state:ok, three replicas are linked to their masters, and every
  # instance sees three masters and three replicas (else redis-benchmark --cluster finds slotless "masters").
  for _ in $(seq 600); do
    local ok=0 linked=0 seen=0
    for p in $(seq "$first" $((first + 5))); do
      redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
      redis-cli -p "$p" info replication 2>/dev/null | grep -q '^master_link_status:up' && linked=$((linked + 1))
      [ "$(redis-cli -p "$p" cluster nodes 2>/dev/null | awk '$3 ~ /slave/' | wc -l)" = 3 ] && seen=$((seen + 1))
    done
    [ "$ok$linked$seen" = 636 ] && return 0
    sleep 0.1
  done
  echo "redis cluster did not settle (3 masters, 3 linked replicas, cluster_state:ok); see $dir" >&2
  return 1
}

# ringkv_ports_free BASE N: the client, peer and admin ports of `up --nodes N --base-port BASE` are free.
ringkv_ports_free() {
  port_free $(seq $(($1 + 1)) $(($1 + $2))) $(seq $(($1 + 101)) $(($1 + 100 + $2))) \
    $(seq $(($1 + 201)) $(($1 + 200 + $2)))
}

# ringkv_pids DATA_DIR: the node pids from DATA_DIR/cluster.json, in node order.
ringkv_pids() {
  python3 -c 'import json,sys; print(" ".join(str(n["pid"]) for n in json.load(open(sys.argv[1]))["nodes"]))' \
    "$1/cluster.json"
}

# ringkv_admins DATA_DIR: the nodes' admin addresses (host:port) from DATA_DIR/cluster.json.
ringkv_admins() {
  python3 -c 'import json,sys; print(" ".join(n["admin"] for n in json.load(open(sys.argv[1]))["nodes"]))' \
    "$1/cluster.json"
}

# rss_kb PID: resident set size in KiB (VmRSS).
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# cpu_ticks PID: user + system CPU time in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# info_keys PORT: the keys= count of INFO's db0 line (0 when there is none).
info_keys() {
  redis-cli -p "$1" info keyspace 2>/dev/null | tr -d '\r' |
    awk -F'[:=,]' '/^db0:/ {print $3; found=1} END {if (!found) print 0}'
}

# rb redis-benchmark ARGS...: runs redis-benchmark with --csv, prints one line per test,
# "TEST RPS P50_MS P99_MS", found by the names in the CSV header. The command goes to stderr. --csv goes first,
# so ARGS may end with a command of its own (redis-benchmark reads no options after one).
rb() {
  local out
  echo "+ redis-benchmark --csv $*" >&2
  out=$(redis-benchmark --csv "$@" 2>/dev/null) || { echo "redis-benchmark failed: $*" >&2; return 1; }
  printf '%s\n' "$out" | tr -d '"\r' | awk -F, '
    /^test,/ { for (i = 1; i <= NF; i++) col[$i] = i; next }
    col["rps"] && NF > 2 { print $1, $col["rps"], $col["p50_latency_ms"], $col["p99_latency_ms"] }'
}

# gen_sets N TAG [EX]: N RESP SET commands key:0..key:N-1, each value 64 bytes made from TAG, for
# `redis-cli --pipe`; with EX, each with `EX <EX>` (an expiring key).
gen_sets() {
  python3 - "$1" "$2" "${3:-}" <<'PY'
import sys
n, tag, ex = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = sys.stdout.buffer
val = (tag * 64)[:64].encode()
head = b"*5\r\n$3\r\nSET\r\n" if ex else b"*3\r\n$3\r\nSET\r\n"
tail = b"$2\r\nEX\r\n$%d\r\n%s\r\n" % (len(ex), ex.encode()) if ex else b""
for i in range(n):
    k = b"key:%d" % i
    out.write(head + b"$%d\r\n%s\r\n$64\r\n%s\r\n" % (len(k), k, val) + tail)
PY
}

# gen_hsets KEYS FIELDS VALUE_BYTES TAG: KEYS x FIELDS RESP `HSET h:I f:J <value>` commands, for
# `redis-cli --pipe`; each value VALUE_BYTES bytes made from TAG. Field-major (f:0 of every hash, then f:1...),
# so consecutive commands name different keys, as a spread workload would; the final contents are the same.
gen_hsets() {
  python3 - "$1" "$2" "$3" "$4" <<'PY'
import sys
keys, fields, size, tag = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
out = sys.stdout.buffer
val = (tag * size)[:size].encode()
tail = b"$%d\r\n%s\r\n" % (size, val)
ks = [b"$%d\r\nh:%d\r\n" % (len(b"h:%d" % i), i) for i in range(keys)]
for j in range(fields):
    f = b"f:%d" % j
    head = b"*4\r\n$4\r\nHSET\r\n"
    mid = b"$%d\r\n%s\r\n" % (len(f), f)
    out.write(b"".join(head + k + mid + tail for k in ks))
PY
}

# gen_sadds KEYS MEMBERS: KEYS x MEMBERS RESP `SADD s:I m:J` commands, member-major like gen_hsets.
gen_sadds() {
  python3 - "$1" "$2" <<'PY'
import sys
keys, members = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
ks = [b"$%d\r\ns:%d\r\n" % (len(b"s:%d" % i), i) for i in range(keys)]
for j in range(members):
    m = b"m:%d" % j
    head = b"*3\r\n$4\r\nSADD\r\n"
    tail = b"$%d\r\n%s\r\n" % (len(m), m)
    out.write(b"".join(head + k + tail for k in ks))
PY
}
