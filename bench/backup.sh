#!/usr/bin/env bash
# Issue 21: what a backup and a restore of one node cost. A 3-node local cluster (`ringkv up`,
# default settings) is loaded with KEYS keys (100-byte values, through redis-cli --pipe), so every
# node holds every key, and left to settle. Then n1 is backed up with `ringkv backup` twice: once
# idle, once while redis-benchmark writes through n2 (SET, 50 clients, random keys), to show that
# writes go on. Printed: the backup's time and size, against the size on disk of n1's commit log
# (`du` of its data dir's log/) and the log size the node reports; then `ringkv restore` into a
# fresh data dir and the time until that node, started alone on it, answers with every key.
#
#   bench/backup.sh                  # 1,000,000 keys
#   KEYS=100000 bench/backup.sh      # smaller
source "$(dirname "$0")/lib.sh"
need redis-cli redis-tools
need redis-benchmark redis-tools
need python3 python3
build_release

WORK=${WORK:-/tmp/ringkv-bench-backup}
KEYS=${KEYS:-1000000}
BASE=${RINGKV_BASE:-19700}
machine_long
echo "cluster: $RINGKV up --nodes 3 --base-port $BASE; backups of n1 (admin 127.0.0.1:$((BASE+201)))"
start_ringkv "$BASE" "$WORK" 3
PYTHONPATH="$(dirname "$0")" python3 - "$WORK" "$BASE" "$KEYS" "$RINGKV" <<'PY'
import os, shutil, signal, subprocess, sys, time
from ringkv_cluster import cluster_nodes, copies, load, metric, wait
work, base, keys, ringkv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
nodes = cluster_nodes(work)
n1 = nodes[0]

def du(path):
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True).stdout.split()[0])

load(n1, keys, "v" * 100)
waited = wait(lambda: copies(nodes) == 3 * keys, 600, "three copies of every key")
print(f"settled: {3*keys} copies ({waited:.1f} s)")
log_dir = f"{work}/n1/log"
print(f"n1 commit log on disk: {du(log_dir)} bytes (ringkv_log_bytes {metric(n1, 'ringkv_log_bytes'):.0f})")

def backup(dir, busy):
    shutil.rmtree(dir, ignore_errors=True)
    bench = None
    if busy:
        bench = subprocess.Popen(["redis-benchmark", "-p", str(base + 2), "-t", "set", "-n", "100000000",
                                  "-c", "50", "-d", "100", "-r", "1000000", "-q", "--csv"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1)  # let the writers start (a load, not a condition)
        w0, t0 = metric(nodes[1], "ringkv_writes_ok_total"), time.time()
        time.sleep(3)  # the same load with no backup, to compare with
        base_rate = (metric(nodes[1], "ringkv_writes_ok_total") - w0) / (time.time() - t0)
        print(f"  writes through n2 with no backup running: {base_rate:.0f}/s")
    before = metric(nodes[1], "ringkv_writes_ok_total") if busy else 0
    t = time.time()
    out = subprocess.run([ringkv, "backup", "--admin", n1["admin"], dir], capture_output=True, text=True)
    took = time.time() - t
    if out.returncode != 0:
        sys.exit(f"backup failed: {out.stdout}{out.stderr}")
    if bench:
        writes = metric(nodes[1], "ringkv_writes_ok_total") - before
        bench.send_signal(signal.SIGINT)
        bench.wait()
        print(f"  writes through n2 while it ran: {writes:.0f} ({writes / took:.0f}/s)")
    print(f"  {out.stdout.strip()}")
    print(f"  backup {'under load' if busy else 'idle'}: {took:.2f} s, {du(dir)} bytes in {dir}")

backup(f"{work}/backup-idle", False)
backup(f"{work}/backup-busy", True)

target = f"{work}/restored"
shutil.rmtree(target, ignore_errors=True)
t = time.time()
out = subprocess.run([ringkv, "restore", f"{work}/backup-idle", "--data-dir", target, "--whole-cluster"],
                     capture_output=True, text=True)
if out.returncode != 0:
    sys.exit(f"restore failed: {out.stdout}{out.stderr}")
print(f"restore: {time.time() - t:.2f} s ({out.stdout.strip()})")
logf = open(f"{work}/restored.log", "w")
t = time.time()
p = subprocess.Popen([ringkv, "node", "--name", "n1", "--client", f"127.0.0.1:{base+50}", "--peer", f"127.0.0.1:{base+150}",
                      "--admin", f"127.0.0.1:{base+250}", "--data-dir", target], stdout=logf, stderr=logf)
try:
    r = {"admin": f"127.0.0.1:{base+250}"}
    took = wait(lambda: metric(r, "ringkv_keys") >= keys, 300, "the restored node's keys")
    print(f"restored node started and holds {metric(r, 'ringkv_keys'):.0f} keys {time.time() - t:.2f} s after its start")
finally:
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
PY
