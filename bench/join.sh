#!/usr/bin/env bash
# Issue 17, part 1: what a sixth node costs to join. A 5-node local cluster (`ringkv up`, default
# settings: 128 tokens a node) is loaded with KEYS keys (100-byte values, through redis-cli --pipe)
# and left to settle (every key on its three replicas); then n6 is started with `ringkv node`, and
# the cluster is left to converge (every key on exactly three of the six, and every node has ended
# an anti-entropy round with n6). Copies moved = entries sent by anti-entropy (`/status`
# anti_entropy keys_sent, both sides of a round) plus by hand-off (`ringkv_handoff_sent_total`), on
# every node, against the ideal N x K / 6; bytes moved = the reconciliation kinds of
# `ringkv_peer_bytes_sent_by_kind_total`.
#
#   bench/join.sh                    # 1,000,000 keys
#   KEYS=100000 bench/join.sh        # smaller
source "$(dirname "$0")/lib.sh"
need redis-cli redis-tools
need python3 python3
build_release

WORK=${WORK:-/tmp/ringkv-bench-join}
KEYS=${KEYS:-1000000}
BASE=${RINGKV_BASE:-19600}
machine_long
echo "cluster: $RINGKV up --nodes 5 --base-port $BASE, then ringkv node --name n6"
start_ringkv "$BASE" "$WORK" 5
PYTHONPATH="$(dirname "$0")" python3 - "$WORK" "$BASE" "$KEYS" "$RINGKV" <<'PY'
import os, signal, subprocess, sys, time
from ringkv_cluster import KINDS, agreed_since, bytes_moved, cluster_nodes, copies, load, metric, quiet, status, wait
work, base, keys, ringkv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
nodes = cluster_nodes(work)

def copies_moved(ns):
    return sum(sum(p["keys_sent"] for p in status(n).get("anti_entropy", {}).values())
               + metric(n, "ringkv_handoff_sent_total") for n in ns)

load(nodes[0], keys, "v" * 100)
waited = wait(lambda: copies(nodes) == 3 * keys, 600, "three copies of every key")
print(f"settled: {3*keys} copies ({waited:.1f} s)")

copies_before, bytes_before = copies_moved(nodes), bytes_moved(nodes)
n6 = {"name": "n6", "admin": f"127.0.0.1:{base+206}"}
os.makedirs(work + "/n6", exist_ok=True)
log = open(work + "/n6.log", "w")
proc = subprocess.Popen([ringkv, "node", "--name", "n6", "--client", f"127.0.0.1:{base+6}",
                         "--peer", f"127.0.0.1:{base+106}", "--admin", n6["admin"],
                         "--data-dir", work + "/n6/data", "--seeds", nodes[0]["peer"]],
                        stdout=log, stderr=log)
try:
    t = time.time()
    six = nodes + [n6]
    took = wait(lambda: copies(six) == 3 * keys and status(n6)["keys"] > 0, 600, "three copies of every key on six nodes")
    wait(lambda: all(agreed_since(n, "n6", t) and agreed_since(n6, n["name"], t) for n in nodes), 300, "anti-entropy rounds with n6")
    # The counters of the last messages.
    moved, after = quiet(lambda: (copies_moved(six), bytes_moved(six)))
    moved -= copies_before
    ideal = 3 * keys / 6
    held = status(n6)["keys"]
    print(f"n6 joined: holds {held} keys ({held / ideal:.2f}x the ideal {ideal:.0f}), converged in {took:.1f} s")
    print(f"copies moved: {moved:.0f} = {moved / ideal:.2f}x the ideal N x K / 6 (hand-off {sum(metric(n, 'ringkv_handoff_sent_total') for n in six):.0f})")
    print(f"bytes moved: {sum(after[k] - bytes_before[k] for k in KINDS):.0f}")
    for k in KINDS:
        d = after[k] - bytes_before[k]
        if d: print(f"  {k:16} {d:12.0f}")
finally:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
PY
