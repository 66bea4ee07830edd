#!/usr/bin/env bash
# Issue 21, part 1: what a rolling upgrade costs clients. A 3-node cluster of release builds of a previous
# release (OLD, 0.2.0 by default, built by tools/release.sh --release) takes a steady closed-loop load:
# CLIENTS threads, each sending one request at a time (SET, GET, INCR, HSET, SADD on 10,000 keys of each
# type) through a node chosen at random among those not being drained, timing each. Phase 1: PHASE seconds
# with no upgrade. Phase 2: PHASE seconds of the same load, during which every node in turn (at 1/4, 2/4
# and 3/4 of the phase) is drained (clients finish their request on it and go elsewhere), stopped with
# SIGTERM, started on the current build (cargo build --release) on the same data directory, and undrained
# once every node sees all three up with its new generation. Phase 3: the same again, each node now
# restarted on the current build (a rolling restart: what stopping a node of this release costs, since
# 0.2.0 nodes stop without telling their peers and 0.3.0 nodes drain first). For each phase: requests,
# errors (error replies, timeouts, dropped connections), and latency p50, p99, p99.9, max.
# The nodes run with the default settings (heartbeat 200 ms, failure timeout 1 s) and one runtime thread
# each per two cores, as `ringkv up` gives them.
#
#   bench/upgrade.sh                          # 0.2.0 -> current, 30 s phases, 4 clients
#   PHASE=10 CLIENTS=8 bench/upgrade.sh
#   OLD=0.1.0 MIX=strings bench/upgrade.sh    # 0.1.0 has strings only
#   BENCH_RINGKV=/path/to/ringkv BENCH_SKIP_BUILD=1 bench/upgrade.sh   # upgrade to another build
source "$(dirname "$0")/lib.sh"
need python3 python3
build_release

OLD=${OLD:-0.2.0}
OLD_RINGKV=$("$BENCH_ROOT/tools/release.sh" bin "$OLD" --release)
WORK=${WORK:-/tmp/ringkv-bench-upgrade}
PHASE=${PHASE:-30}
CLIENTS=${CLIENTS:-4}
MIX=${MIX:-every}
BASE=${RINGKV_BASE:-19700}
machine_long
echo "old: ringkv $OLD, $OLD_RINGKV"
echo "load: $CLIENTS closed-loop clients, mix $MIX; phase 1 $PHASE s steady, phase 2 $PHASE s with the rolling upgrade, phase 3 $PHASE s with a rolling restart on the current build"
ringkv_ports_free "$BASE" 3
rm -rf "$WORK"; mkdir -p "$WORK"
PYTHONPATH="$(dirname "$0")" python3 - "$WORK" "$BASE" "$OLD_RINGKV" "$RINGKV" "$PHASE" "$CLIENTS" "$MIX" <<'PY'
import os, random, signal, socket, subprocess, sys, threading, time
from ringkv_cluster import status, wait
work, base, old_bin, new_bin = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
phase_s, clients, mix = float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
N = 3
names = [f"n{i + 1}" for i in range(N)]
addr = lambda off, i: f"127.0.0.1:{base + off + i + 1}"
nodes = [{"name": names[i], "client": addr(0, i), "peer": addr(100, i), "admin": addr(200, i)} for i in range(N)]
threads = max(1, (os.cpu_count() or 1) // N)
procs = [None] * N

def start(i, binary):
    n = nodes[i]
    seeds = ",".join(m["peer"] for m in nodes if m is not n)
    log = open(f"{work}/{n['name']}.log", "ab")
    procs[i] = subprocess.Popen([binary, "node", "--name", n["name"], "--client", n["client"], "--peer", n["peer"],
                                 "--admin", n["admin"], "--data-dir", f"{work}/{n['name']}", "--seeds", seeds,
                                 "--set", f"worker_threads={threads}"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)

def stop_all():
    for p in procs:
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        if p:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill(); p.wait()

def sees_all(i, gen_of=None):
    s = status(nodes[i])
    up = [n for n in s["nodes"] if n["state"] == "up"]
    return len(up) == N and all(n.get("generation") == gen_of[n["name"]] for n in up if gen_of and n["name"] in gen_of)

# --- a minimal blocking RESP2 client
class Conn:
    def __init__(self, a):
        host, port = a.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
    def cmd(self, *args):
        out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args))
        self.s.sendall(out)
        return self.reply()
    def reply(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed")
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-", b":"):
            return (t, rest)
        if t == b"$":
            n = int(rest)
            return (t, None if n < 0 else self.f.read(n + 2)[:-2])
        if t == b"*":
            n = int(rest)
            return (t, [self.reply() for _ in range(max(n, 0))])
        raise ConnectionError(f"unexpected reply {line!r}")
    def close(self):
        self.s.close()

# --- the load: drain bookkeeping under one condition variable
cv = threading.Condition()
draining, in_flight, epoch = set(), [0] * N, [0] * N
stop = threading.Event()
phase = ["1"]
samples = {"1": [], "2": [], "3": []}   # latencies in microseconds, per phase
errors = {"1": [], "2": [], "3": []}
KEYS = 10_000

def request(rng, seq, cid):
    k = rng.randrange(KEYS)
    r = rng.random()
    if mix == "strings":
        return ("SET", f"str:{k}", f"c{cid}-{seq}") if r < 0.5 else ("GET", f"str:{k}")
    if r < 0.30: return ("SET", f"str:{k}", f"c{cid}-{seq}")
    if r < 0.60: return ("GET", f"str:{k}")
    if r < 0.75: return ("INCR", f"ctr:{k}")
    if r < 0.90: return ("HSET", f"hash:{k}", f"f{rng.randrange(8)}", f"c{cid}-{seq}")
    return ("SADD", f"set:{k}", f"m{rng.randrange(8)}")

def client(cid):
    rng = random.Random(cid)
    conns = {}
    seq = 0
    while not stop.is_set():
        with cv:
            live = [i for i in range(N) if i not in draining]
            i = rng.choice(live)
            in_flight[i] += 1
            e = epoch[i]
        seq += 1
        args = request(rng, seq, cid)
        ph = phase[0]
        t = time.perf_counter()
        err = None
        try:
            c = conns.get(i)
            if c is None or c[0] != e:
                if c: c[1].close()
                c = conns[i] = (e, Conn(nodes[i]["client"]))
            kind, val = c[1].cmd(*args)
            if kind == b"-":
                err = val.decode(errors="replace")
        except (OSError, ConnectionError) as x:
            err = f"{type(x).__name__}: {x}"
            conns.pop(i, None)
        us = (time.perf_counter() - t) * 1e6
        with cv:
            in_flight[i] -= 1
            cv.notify_all()
            samples[ph].append(us)
            if err:
                errors[ph].append(f"{args[0]} via {names[i]}: {err}")

def drain(i):
    with cv:
        draining.add(i); epoch[i] += 1
        if not cv.wait_for(lambda: in_flight[i] == 0, timeout=15):
            sys.exit(f"requests on {names[i]} did not finish")

def undrain(i):
    with cv:
        draining.discard(i)

def pct(xs, p):
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")

def report(ph, secs):
    with cv:
        xs = sorted(samples[ph]); errs = list(errors[ph])
    print(f"phase {ph}: {len(xs)} requests in {secs:.1f} s ({len(xs) / secs:.0f}/s), {len(errs)} errors; "
          f"latency p50 {pct(xs, .5) / 1000:.2f} ms, p99 {pct(xs, .99) / 1000:.2f} ms, "
          f"p99.9 {pct(xs, .999) / 1000:.2f} ms, max {(xs[-1] if xs else float('nan')) / 1000:.2f} ms")
    for e in errs[:10]:
        print(f"  error: {e}")

def upgrade(t2, binary):
    for i in range(N):
        # Replacements spread over the phase, so that it lasts as long as phase 1 (timed on purpose).
        time.sleep(max(0.0, t2 + (i + 1) * phase_s / (N + 1) - time.time()))
        s = time.time()
        print(f"  {s - t2:5.1f} s: draining {names[i]}")
        drain(i)
        procs[i].send_signal(signal.SIGTERM)
        try:
            code = procs[i].wait(30)
        except subprocess.TimeoutExpired:
            sys.exit(f"{names[i]} did not exit within 30 s of SIGTERM")
        start(i, binary)
        gen = {}
        wait(lambda: gen.setdefault(names[i], status(nodes[i])["generation"]) is not None, 30, f"{names[i]}'s /status")
        wait(lambda: all(sees_all(j, gen) for j in range(N)), 30,
             f"every node to see {names[i]} (new build) up in its new generation")
        undrain(i)
        print(f"  {time.time() - t2:5.1f} s: {names[i]} old exited {code}; new build up everywhere "
              f"{time.time() - s:.1f} s after the drain began")
    time.sleep(max(0.0, t2 + phase_s - time.time()))

try:
    for i in range(N):
        start(i, old_bin)
    took = wait(lambda: all(sees_all(i) for i in range(N)), 60, "the old cluster to come up")
    print(f"cluster up on the old release ({took:.1f} s)")
    workers = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for w in workers: w.start()
    t1 = time.time()
    time.sleep(phase_s)   # phase 1 is timed on purpose: a fixed stretch of steady load
    with cv:
        phase[0] = "2"
    t2 = time.time()
    report("1", t2 - t1)
    try:
        upgrade(t2, new_bin)
        with cv:
            phase[0] = "3"
        t3 = time.time()
        report("2", t3 - t2)
        upgrade(t3, new_bin)
    finally:
        stop.set()
        for w in workers: w.join()
        report(phase[0], time.time() - (t3 if phase[0] == "3" else t2))
finally:
    stop.set()
    stop_all()
PY
