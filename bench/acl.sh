#!/usr/bin/env bash
# Issue 20: how long an ACL change takes to reach every node of a 5-node cluster.
#
#   bench/acl.sh                 # 30 changes
#   REPS=5 bench/acl.sh          # a smoke test
#
# Starts 5 nodes with `ringkv up` (release build). Each repetition changes one user's password through a
# node taken in turn (ACL SETUSER bench on >pwN ~bench:* +@read), timing the reply, and from the moment it
# is sent polls ACL GETUSER on all five nodes over open connections until every one shows the new
# password's hash; that is the time for the change to reach every node. SETUSER answers once every node up
# has the change on disk, so the reply time bounds the spread; the poll shows when clients see it.
# Prints the median and the maximum of both, in milliseconds.
source "$(dirname "$0")/lib.sh"
need python3 python3
build_release

WORK=${WORK:-/tmp/ringkv-bench-acl}
BASE=${BASE:-19700}
REPS=${REPS:-30}

machine_long
ringkv_ports_free "$BASE" 5
start_ringkv "$BASE" "$WORK" 5
echo "ringkv: $RINGKV, 5 nodes on $((BASE + 1))..$((BASE + 5)); $REPS changes"

python3 - "$BASE" "$REPS" <<'EOF'
import hashlib, socket, sys, time

base, reps = int(sys.argv[1]), int(sys.argv[2])

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)

    def read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+", b"-", b":"):
            return rest
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def cmd(self, *args):
        self.send(*args)
        return self.read()

nodes = [Conn(base + i) for i in range(1, 6)]
pollers = [Conn(base + i) for i in range(1, 6)]
assert nodes[0].cmd("ACL", "SETUSER", "bench", "on", ">pw0", "~bench:*", "+@read") == b"OK"
replies, spreads = [], []
for n in range(1, reps + 1):
    via = nodes[n % 5]
    want = hashlib.sha256(b"pw%d" % n).hexdigest().encode()
    start = time.perf_counter()
    via.send("ACL", "SETUSER", "bench", "resetpass", ">pw%d" % n)
    replied, seen = None, [False] * 5
    while not all(seen) or replied is None:
        if replied is None:
            via.s.setblocking(False)
            try:
                peek = via.s.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                peek = b""
            via.s.setblocking(True)
            if peek:
                assert via.read() == b"OK"
                replied = time.perf_counter() - start
        for i, p in enumerate(pollers):
            if not seen[i]:
                user = p.cmd("ACL", "GETUSER", "bench")
                fields = dict(zip(user[::2], user[1::2]))
                seen[i] = fields[b"passwords"] == [want]
        if time.perf_counter() - start > 10:
            raise SystemExit(f"change {n} not seen everywhere within 10 s: {seen}")
    spread = time.perf_counter() - start
    replies.append(replied * 1000)
    spreads.append(spread * 1000)

def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]

print(f"ACL SETUSER reply:          median {med(replies):.2f} ms, max {max(replies):.2f} ms")
print(f"seen on all 5 nodes after:  median {med(spreads):.2f} ms, max {max(spreads):.2f} ms")
EOF
