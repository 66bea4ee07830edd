#!/usr/bin/env bash
# Issue 7: membership cost. Idle local clusters of 8, 16 and 32 nodes (`ringkv up --nodes N`, default
# heartbeat 200 ms); after SETTLE seconds, per node CPU (utime + stime from /proc/PID/stat) and peer
# traffic (each node's /metrics: ringkv_peer_{messages,bytes}_sent_by_kind_total) over a WINDOW-second
# window; then how it grows with N and what that means for 100 and 1000 nodes.
#
#   bench/membership.sh                               # 8, 16, 32 nodes, settle 10 s, window 10 s
#   SIZES="4 8" SETTLE=2 WINDOW=3 bench/membership.sh # a smoke test
source "$(dirname "$0")/lib.sh"
need python3 python3
build_release

WORK=${WORK:-/tmp/ringkv-bench-membership}
SIZES=${SIZES:-8 16 32}
SETTLE=${SETTLE:-10}
WINDOW=${WINDOW:-10}
BASE=${RINGKV_BASE:-19000}
rm -rf "$WORK"; mkdir -p "$WORK"
machine_long
echo "clusters: $RINGKV up --nodes N --base-port $BASE --data-dir $WORK/nN   (default settings: heartbeat_interval_ms 200)"
echo "measure: after 'ready' + ${SETTLE} s, a ${WINDOW} s window: /proc/PID/stat utime+stime (and /proc/PID/task/*/schedstat), GET /metrics on every node"

# sample DATA_DIR OUT: one line per node: "name pid epoch_seconds cpu_ticks" then its /metrics ringkv_peer_* lines.
sample() {
  python3 - "$1" >"$2" <<'PY'
import json, os, sys, time, urllib.request
nodes = json.load(open(sys.argv[1] + "/cluster.json"))["nodes"]
for n in nodes:
    t = time.time()
    with open(f"/proc/{n['pid']}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    ns = 0  # on-CPU nanoseconds of every thread, from schedstat: finer than the stat ticks
    for task in os.listdir(f"/proc/{n['pid']}/task"):
        try:
            with open(f"/proc/{n['pid']}/task/{task}/schedstat") as f:
                ns += int(f.read().split()[0])
        except OSError:
            pass
    body = urllib.request.urlopen(f"http://{n['admin']}/metrics", timeout=5).read().decode()
    print(f"node {n['name']} {n['pid']} {t:.6f} {ticks} {ns}")
    for line in body.splitlines():
        if line.startswith("ringkv_peer_") or line.startswith("ringkv_heartbeats_sent"):
            print(line)
PY
}

for n in $SIZES; do
  ringkv_ports_free "$BASE" "$n"
  start_ringkv "$BASE" "$WORK/n$n" "$n"
  sleep "$SETTLE"
  sample "$WORK/n$n" "$WORK/n$n.t0"
  sleep "$WINDOW"
  sample "$WORK/n$n" "$WORK/n$n.t1"
  echo "measured $n nodes"
  stop_last
done

python3 - "$WORK" $SIZES <<'PY'
import os, re, sys
work, sizes = sys.argv[1], [int(x) for x in sys.argv[2:]]
tck = os.sysconf("SC_CLK_TCK")
metric = re.compile(r'^(ringkv_[a-z_]+)(?:\{kind="([a-z_]+)"\})? ([0-9.e+]+)')

def parse(path):
    nodes, cur = {}, None
    for line in open(path):
        if line.startswith("node "):
            _, name, pid, t, ticks, ns = line.split()
            cur = nodes[name] = {"t": float(t), "ticks": int(ticks), "ns": int(ns), "m": {}}
        else:
            m = metric.match(line)
            if m:
                cur["m"][(m.group(1), m.group(2))] = float(m.group(3))
    return nodes

rows = []
for n in sizes:
    a, b = parse(f"{work}/n{n}.t0"), parse(f"{work}/n{n}.t1")
    per = []
    for name in a:
        x, y = a[name], b[name]
        dt = y["t"] - x["t"]
        d = lambda k, kind: (y["m"].get((k, kind), 0) - x["m"].get((k, kind), 0)) / dt
        hb_msgs = d("ringkv_peer_messages_sent_by_kind_total", "heartbeat")
        hb_bytes = d("ringkv_peer_bytes_sent_by_kind_total", "heartbeat")
        hb_recv = d("ringkv_peer_messages_received_by_kind_total", "heartbeat")
        all_bytes = sum(v for (k, kind), v in y["m"].items() if k == "ringkv_peer_bytes_sent_by_kind_total") \
            - sum(v for (k, kind), v in x["m"].items() if k == "ringkv_peer_bytes_sent_by_kind_total")
        cpu = (y["ticks"] - x["ticks"]) / tck / dt
        sched = (y["ns"] - x["ns"]) / 1e9 / dt
        per.append((cpu, hb_msgs, hb_bytes, hb_recv, all_bytes / dt - hb_bytes, sched))
    k = len(per)
    avg = [sum(p[i] for p in per) / k for i in range(6)]
    cpus = sorted(p[0] for p in per)
    rows.append((n, avg, cpus[0], cpus[-1]))

print()
print("| nodes | CPU per node (mean; min-max) | same from schedstat | all nodes' CPU | heartbeats sent /s per node | bytes per heartbeat | heartbeat bytes/s per node | heartbeats received /s per node | other peer bytes/s per node |")
print("|---|---|---|---|---|---|---|---|---|")
for n, (cpu, msgs, byts, recv, other, sched), lo, hi in rows:
    per_msg = byts / msgs if msgs else 0
    print(f"| {n} | {cpu*100:.2f} % ({lo*100:.2f}-{hi*100:.2f}) | {sched*100:.2f} % | {cpu*n*100:.1f} % of one core | {msgs:.1f} | {per_msg:.0f} | "
          f"{byts:,.0f} | {recv:.1f} | {other:,.0f} |")

# Growth: heartbeats sent per node per second = (N - 1) / interval; bytes per heartbeat ~ a + b N (the member
# list), fitted by least squares. CPU is extrapolated two ways from the largest cluster measured: at its CPU
# per heartbeat handled (sent or received; a floor, as if handling one cost the same at any N) and at its
# CPU per heartbeat byte handled (as if the cost grew with the member list). The measured CPU includes the
# idle node's other timers, so both overstate the heartbeat share at small N.
def lstsq(xs, ys):
    m = len(xs); sx = sum(xs); sy = sum(ys); sxx = sum(x * x for x in xs); sxy = sum(x * y for x, y in zip(xs, ys))
    den = m * sxx - sx * sx
    q = (m * sxy - sx * sy) / den if den else 0
    return (sy - q * sx) / m, q

def rate(bps):
    for unit, div in (("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3)):
        if bps >= div:
            return f"{bps / div:,.1f} {unit}"
    return f"{bps:,.0f} B/s"

if len(rows) >= 2:
    ns = [r[0] for r in rows]
    a, b = lstsq(ns, [r[1][2] / r[1][1] for r in rows])
    per_peer = sum(r[1][1] / (r[0] - 1) for r in rows) / len(rows)
    n_top, avg_top = rows[-1][0], rows[-1][1]
    cpu_per_msg = avg_top[0] / (avg_top[1] + avg_top[3])
    cpu_per_byte = avg_top[0] / (2 * avg_top[2])
    print()
    print(f"fit: bytes per heartbeat = {a:.0f} + {b:.1f} x N; heartbeats sent per peer per second = {per_peer:.2f}")
    print("CPU per heartbeat handled (sent or received), all of a node's CPU counted: "
          + ", ".join(f"N={r[0]}: {r[1][0] / (r[1][1] + r[1][3]) * 1e6:.1f} us" for r in rows))
    print()
    print(f"| nodes | heartbeats sent /s per node | bytes per heartbeat | heartbeat bytes/s per node (sent; as much received) | whole cluster | CPU per node: per-heartbeat cost of N={n_top} | per-byte cost of N={n_top} |")
    print("|---|---|---|---|---|---|---|")
    for n in ns + [100, 1000]:
        msgs = per_peer * (n - 1)
        byts = msgs * (a + b * n)
        tag = "" if n in ns else " (extrapolated)"
        print(f"| {n}{tag} | {msgs:,.0f} | {a + b * n:,.0f} | {rate(byts)} | {rate(byts * n)} | "
              f"{2 * msgs * cpu_per_msg * 100:,.1f} % of a core | {2 * byts * cpu_per_byte * 100:,.1f} % of a core |")
PY
