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
python3 - "$WORK" "$BASE" "$KEYS" "$RINGKV" <<'PY'
import json, os, signal, subprocess, sys, time, urllib.request
work, base, keys, ringkv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
nodes = json.load(open(work + "/cluster.json"))["nodes"]
KINDS = ["ae_root", "ae_root_reply", "ae_groups", "ae_groups_reply", "ae_keys", "ae_keys_reply",
         "transfer", "transfer_ack", "offer", "offer_reply"]

def get(admin, path):
    return urllib.request.urlopen(f"http://{admin}{path}", timeout=5).read().decode()

def status(n): return json.loads(get(n["admin"], "/status"))

def metric(n, name):
    for line in get(n["admin"], "/metrics").splitlines():
        if line.startswith(name + " "): return float(line.split()[1])
    return 0.0

def kind_bytes(n):
    out = {}
    for line in get(n["admin"], "/metrics").splitlines():
        if line.startswith("ringkv_peer_bytes_sent_by_kind_total{"):
            out[line.split('kind="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out

def copies_moved(ns):
    return sum(sum(p["keys_sent"] for p in status(n).get("anti_entropy", {}).values())
               + metric(n, "ringkv_handoff_sent_total") for n in ns)

def bytes_moved(ns):
    total = {k: 0.0 for k in KINDS}
    for n in ns:
        b = kind_bytes(n)
        for k in KINDS: total[k] += b.get(k, 0.0)
    return total

def copies(ns): return sum(status(n)["keys"] for n in ns)

def wait(cond, limit, what):
    t = time.time()
    while time.time() - t < limit:
        try:
            if cond(): return time.time() - t
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")

port = lambda n: n["client"].rsplit(":", 1)[1]
value = "v" * 100
t = time.time()
cmds = "".join(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n$100\r\n{value}\r\n" for k in (f"key:{i:07d}" for i in range(keys)))
out = subprocess.run(["redis-cli", "-p", port(nodes[0]), "--pipe"], input=cmds.encode(), capture_output=True)
if out.returncode != 0:
    sys.exit(f"redis-cli --pipe failed: {out.stdout.decode()[-2000:]} {out.stderr.decode()[-2000:]}")
print(f"loaded {keys} keys in {time.time()-t:.1f} s")
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
    def ae_done(n, peer):
        return (status(n).get("anti_entropy", {}).get(peer, {}).get("last_agreement_unix_ms") or 0) >= t * 1000
    wait(lambda: all(ae_done(n, "n6") and ae_done(n6, n["name"]) for n in nodes), 300, "anti-entropy rounds with n6")
    time.sleep(1)  # the counters of the last messages
    moved = copies_moved(six) - copies_before
    after = bytes_moved(six)
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
