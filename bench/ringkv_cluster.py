"""What the Python halves of bench/blip.sh and bench/join.sh share: a local cluster's admin API
(/status, /metrics), the bytes its nodes sent by message kind, polling with a deadline, and a bulk
load through redis-cli --pipe. Imported with PYTHONPATH set to bench/."""
import json, subprocess, sys, time, urllib.request

# The message kinds that reconciliation sends: anti-entropy's digests and entries, hand-off's offers
# and transfers (a leave streams with the same two).
KINDS = ["ae_root", "ae_root_reply", "ae_groups", "ae_groups_reply", "ae_keys", "ae_keys_reply",
         "transfer", "transfer_ack", "offer", "offer_reply"]
# Of those, the kinds that carry entries.
ENTRY_KINDS = ["ae_keys_reply", "transfer"]


def cluster_nodes(work):
    return json.load(open(work + "/cluster.json"))["nodes"]


def get(admin, path):
    return urllib.request.urlopen(f"http://{admin}{path}", timeout=5).read().decode()


def status(n):
    return json.loads(get(n["admin"], "/status"))


def metric(n, name):
    for line in get(n["admin"], "/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def kind_bytes(n):
    out = {}
    for line in get(n["admin"], "/metrics").splitlines():
        if line.startswith("ringkv_peer_bytes_sent_by_kind_total{"):
            out[line.split('kind="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


def bytes_moved(ns):
    """Bytes of each reconciliation kind the nodes `ns` sent, summed."""
    total = {k: 0.0 for k in KINDS}
    for n in ns:
        b = kind_bytes(n)
        for k in KINDS:
            total[k] += b.get(k, 0.0)
    return total


def copies(ns):
    return sum(status(n)["keys"] for n in ns)


def wait(cond, limit, what):
    """Polls `cond` until it holds (a node not answering yet counts as not); the seconds it took.
    Exits with `what` after `limit` seconds."""
    t = time.time()
    while time.time() - t < limit:
        try:
            if cond():
                return time.time() - t
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


def quiet(read, limit=30):
    """`read()` once two reads 0.3 s apart agree: counters that the last messages still move."""
    last = read()
    t = time.time()
    while time.time() - t < limit:
        time.sleep(0.3)
        now = read()
        if now == last:
            return now
        last = now
    sys.exit("counters did not settle")


def agreed_since(n, peer, t):
    """Whether node `n` has ended an anti-entropy round with `peer` (a name) since Unix time `t`."""
    last = status(n).get("anti_entropy", {}).get(peer, {}).get("last_agreement_unix_ms")
    return (last or 0) >= t * 1000


def client_port(n):
    return n["client"].rsplit(":", 1)[1]


def load(n, keys, value):
    """SETs key:0000000.. of `value` through `n`, pipelined by redis-cli --pipe."""
    t = time.time()
    cmds = "".join(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n${len(value)}\r\n{value}\r\n"
                   for k in (f"key:{i:07d}" for i in range(keys)))
    out = subprocess.run(["redis-cli", "-p", client_port(n), "--pipe"], input=cmds.encode(), capture_output=True)
    if out.returncode != 0:
        sys.exit(f"redis-cli --pipe failed: {out.stdout.decode()[-2000:]} {out.stderr.decode()[-2000:]}")
    print(f"loaded {keys} keys in {time.time()-t:.1f} s")
