#!/usr/bin/env bash
# Issue 17, part 3: what a short outage moves. A 5-node local cluster (`ringkv up`, default
# failure_timeout_ms 1000 and rebuild_delay_ms 60000) is loaded with KEYS keys (100-byte values,
# through redis-cli --pipe) and left to settle (every key on its three replicas); then one node is
# SIGSTOPped for PAUSE seconds under a light write load (RATE new keys a second, 100-byte values,
# through another node), SIGCONTed, and the cluster is left to converge again (every key on exactly
# three nodes, no hand-off backlog, and every other node has completed an anti-entropy round with
# the returned one). Bytes moved = the reconciliation kinds of every node's
# ringkv_peer_bytes_sent_by_kind_total (anti-entropy digests and entries, offers, transfers), from
# just before the stop to convergence, against the bytes written during the outage (key + value of
# each acknowledged SET). With REBUILD=0 the node's ranges are rebuilt at once, as before issue 17.
#
#   bench/blip.sh                         # 1,000,000 keys, 5 s pause, 100 writes/s
#   KEYS=100000 PAUSE=3 bench/blip.sh     # smaller
#   REBUILD=0 KEYS=260000 PAUSE=3 RATE=0 bench/blip.sh   # the issue's "today" case, rebuilt at once
#   REBUILD=none BENCH_RINGKV=/path/to/older/ringkv bench/blip.sh   # a build without the setting
source "$(dirname "$0")/lib.sh"
need redis-cli redis-tools
need python3 python3
build_release

WORK=${WORK:-/tmp/ringkv-bench-blip}
KEYS=${KEYS:-1000000}
PAUSE=${PAUSE:-5}
RATE=${RATE:-100}
REBUILD=${REBUILD:-60000}
BASE=${RINGKV_BASE:-19500}
machine_long
FLAGS=()
[ "$REBUILD" != none ] && FLAGS=(--set "rebuild_delay_ms=$REBUILD")
echo "cluster: $RINGKV up --nodes 5 --base-port $BASE -- ${FLAGS[*]:-}"
start_ringkv "$BASE" "$WORK" 5 "${FLAGS[@]}"
PYTHONPATH="$(dirname "$0")" python3 - "$WORK" "$BASE" "$KEYS" "$PAUSE" "$RATE" <<'PY'
import os, signal, socket, sys, time
from ringkv_cluster import (KINDS, ENTRY_KINDS, agreed_since, bytes_moved, client_port, cluster_nodes, copies, load,
                            metric, quiet, wait)
work, base, keys, pause, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
nodes = cluster_nodes(work)

def moved(skip=None): return bytes_moved([n for n in nodes if n is not skip])

def backlog(n): return metric(n, "ringkv_handoff_backlog")

value = "v" * 100
load(nodes[0], keys, value)
waited = wait(lambda: copies(nodes) == 3 * keys, 600, "three copies of every key")
print(f"settled: {3*keys} copies ({waited:.1f} s)")

victim = nodes[2]
others = [n for n in nodes if n is not victim]
before = moved()
before_others = moved(victim)
os.kill(victim["pid"], signal.SIGSTOP)
print(f"SIGSTOP {victim['name']} for {pause} s, writing {rate}/s through {nodes[0]['name']}")
s = socket.create_connection(("127.0.0.1", int(client_port(nodes[0]))))
written = acked = 0
start = time.time(); i = 0
while time.time() - start < pause:
    if rate:
        k = f"blip:{i:07d}"; i += 1
        s.sendall(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n$100\r\n{value}\r\n".encode())
        reply = b""
        while not reply.endswith(b"\r\n"): reply += s.recv(64)
        if reply == b"+OK\r\n":
            acked += 1; written += len(k) + 100
        time.sleep(max(0.0, start + i / rate - time.time()))
    else:
        time.sleep(0.05)
away = moved(victim)
os.kill(victim["pid"], signal.SIGCONT)
t = time.time()
wait(lambda: copies(nodes) == 3 * (keys + acked) and all(backlog(n) == 0 for n in nodes), 600, "convergence")
took = time.time() - t
# Anti-entropy with the returned node runs a moment after the hand-offs (sync::HANDOFF_FIRST):
# its bytes count too, so wait until every other node has completed a round with it.
wait(lambda: all(agreed_since(n, victim["name"], t) for n in others), 120, "anti-entropy rounds with the returned node")
# The counters of the last messages.
after = quiet(moved)
def total(d0, d1, kinds=KINDS): return sum(d1[k] - d0[k] for k in kinds)
entries = ENTRY_KINDS
digests = [k for k in KINDS if k not in entries]
allb = total(before, after)
print(f"writes during the outage: {acked} acknowledged, {written} bytes (key + value)")
print(f"moved while {victim['name']} was away (the other four): {sum(away[k] - before_others[k] for k in KINDS):.0f} bytes")
print(f"converged {took:.1f} s after SIGCONT")
print(f"moved from SIGSTOP to convergence: {allb:.0f} bytes = entries {total(before, after, entries):.0f} + digests and offers {total(before, after, digests):.0f}")
for k in KINDS:
    d = after[k] - before[k]
    if d: print(f"  {k:16} {d:12.0f}")
if written:
    print(f"ratio: all bytes moved / bytes written = {allb / written:.2f}; entry bytes / bytes written = {total(before, after, entries) / written:.2f}")
PY
