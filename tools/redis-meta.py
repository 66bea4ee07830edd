#!/usr/bin/env python3
"""Generates src/resp/cmd/redis-7.0.15.json: Redis's own metadata for ringkv.

ringkv answers COMMAND INFO, COMMAND DOCS and CONFIG GET with what Redis
says of itself, not with a table written by hand. This script asks a real
redis-server and writes its answers to one data file that ringkv embeds
(`src/resp/cmd/meta.rs`):

  * for every command of ringkv's table (the `b"name" =>` lines of
    src/resp/cmd/table.rs), Redis's COMMAND INFO entry and COMMAND DOCS
    entry, as RESP3 type trees (format below), so that ringkv re-encodes
    them byte for byte in RESP2 or RESP3; for the container commands
    CLIENT, CONFIG and COMMAND only the subcommands ringkv has are kept
    (SUBCOMMANDS below), sorted by name (Redis lists them in hash order,
    which changes from one process to the next);
  * the names ringkv asked for that this Redis lacks (`absent`): ringkv's
    own RINGKV, and the 7.2 subcommands CLIENT SETINFO and NO-TOUCH. Their
    entries are written by hand in src/resp/cmd/supplement.json;
  * for every command Redis has, its group from COMMAND DOCS (`list`,
    `sorted-set`, `stream`...), so ringkv can name the family it lacks in
    its unknown-command error;
  * CONFIG GET * of the pristine server, sorted by name. The parameters
    whose value comes from how this script starts the server (port, bind,
    save, dir) are recorded with Redis's built-in defaults instead, and
    listed under `config_normalized`; ringkv answers those itself.

The server is started with no config file, on a free loopback port,
without persistence (--save '' --appendonly no --port P --bind 127.0.0.1
--daemonize no), in a temporary directory, and killed at the end. The
script speaks raw RESP3 (HELLO 3) over a socket: Python's standard library
only. Before writing, it checks that every tree re-encodes to exactly the
bytes Redis sent, in RESP3 and, degraded as Redis degrades it, in RESP2.

Tree format (JSON), one value per RESP3 frame:
  integer          a JSON number                     :2        ->  2
  bulk string      a JSON string starting with "$"   $3 get    ->  "$get"
  simple string    a JSON string starting with "+"   +fast     ->  "+fast"
  null             null                              _         ->  null
  array            a JSON array                      *2 ...    ->  [..., ...]
  set              a JSON array whose first element  ~2 ...    ->  ["~", ..., ...]
                   is the bare string "~"
  map              a JSON object, in Redis's order;  %1 ...    ->  {"summary": "$..."}
                   its keys are bulk strings
(A bare "~" cannot be an element: every string element carries "$" or "+".)

Usage (from the repository root):
  python3 tools/redis-meta.py            # rewrite src/resp/cmd/redis-7.0.15.json
  python3 tools/redis-meta.py --check    # exit 1 if the file is not what it would write
Options: --redis-server PATH, --table PATH, --out PATH.
"""

import argparse
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

# The subcommands ringkv has, per container command (its SUBS tables in
# src/resp/cmd/{client,server,command}.rs; a unit test in meta keeps the two
# in step).
SUBCOMMANDS = {
    "client": ["help", "id", "info", "list", "kill", "setname", "getname",
               "setinfo", "no-evict", "no-touch"],
    "config": ["help", "get", "set", "resetstat", "rewrite"],
    "command": ["help", "count", "info", "docs", "list"],
    "acl": ["cat", "deluser", "dryrun", "genpass", "getuser", "help", "list",
            "load", "log", "save", "setuser", "users", "whoami"],
}

# Parameters whose value on the generator's server comes from its command
# line or working directory, recorded with Redis's built-in default instead
# (redis.conf: `port 6379`, `bind * -::*`, the three save points, `dir ./`).
NORMALIZED_CONFIG = {
    "bind": "* -::*",
    "dir": "./",
    "port": "6379",
    "save": "3600 1 300 100 60 10000",
}

GENERATOR = "python3 tools/redis-meta.py"
OUT = "src/resp/cmd/redis-7.0.15.json"
TABLE = "src/resp/cmd/table.rs"


class RedisError(Exception):
    """An error reply, or a frame this script does not expect."""


# --- RESP3 in ----------------------------------------------------------------

def read_frame(f):
    """Reads one RESP3 frame from the binary file `f` as a tree (above)."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise RedisError(f"connection closed mid-frame: {line!r}")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return "+" + rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"_":
        return None
    if kind == b"$":
        n = int(rest)
        if n < 0:
            raise RedisError("RESP2 null bulk on a RESP3 connection")
        data = f.read(n + 2)
        return "$" + data[:-2].decode()
    if kind in (b"*", b"~", b"%"):
        n = int(rest)
        if n < 0:
            raise RedisError("RESP2 null array on a RESP3 connection")
        if kind == b"%":
            out = {}
            for _ in range(n):
                key = read_frame(f)
                if not isinstance(key, str) or not key.startswith("$") or key[1:] in out:
                    raise RedisError(f"map key not a unique bulk string: {key!r}")
                out[key[1:]] = read_frame(f)
            return out
        items = [read_frame(f) for _ in range(n)]
        return ["~"] + items if kind == b"~" else items
    raise RedisError(f"frame type {kind!r} is not expected in command metadata")


def read_raw(f):
    """Reads one frame's raw bytes (RESP2 or RESP3) without interpreting it."""
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    out = line
    if kind == b"$" and int(rest) >= 0:
        out += f.read(int(rest) + 2)
    elif kind in (b"*", b"~", b"%") and int(rest) > 0:
        count = int(rest) * (2 if kind == b"%" else 1)
        for _ in range(count):
            out += read_raw(f)
    return out


# --- RESP out ----------------------------------------------------------------

def command(*args):
    """A command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def encode(tree, proto):
    """The bytes of `tree` for RESP `proto` (2 or 3), as Redis would send them."""
    if isinstance(tree, bool):
        raise TypeError("booleans are not part of the tree format")
    if isinstance(tree, int):
        return b":%d\r\n" % tree
    if tree is None:
        if proto == 2:
            raise RedisError("a null's RESP2 form ($-1 or *-1) is not known from RESP3")
        return b"_\r\n"
    if isinstance(tree, str):
        body = tree[1:].encode()
        if tree[0] == "+":
            return b"+" + body + b"\r\n"
        return b"$%d\r\n%s\r\n" % (len(body), body)
    if isinstance(tree, dict):
        head = b"%%%d\r\n" % len(tree) if proto == 3 else b"*%d\r\n" % (2 * len(tree))
        return head + b"".join(encode("$" + k, proto) + encode(v, proto) for k, v in tree.items())
    if tree[:1] == ["~"]:
        items = tree[1:]
        head = b"~%d\r\n" % len(items) if proto == 3 else b"*%d\r\n" % len(items)
    else:
        items = tree
        head = b"*%d\r\n" % len(items)
    return head + b"".join(encode(x, proto) for x in items)


# --- the server ----------------------------------------------------------------

class Server:
    """A pristine redis-server on a free loopback port, killed on close."""

    def __init__(self, binary):
        self.dir = tempfile.TemporaryDirectory(prefix="redis-meta-")
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.log = open(os.path.join(self.dir.name, "redis.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "--save", "", "--appendonly", "no", "--port", str(self.port),
             "--bind", "127.0.0.1", "--daemonize", "no"],
            cwd=self.dir.name, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    sys.exit(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)

    def connect(self, proto):
        """A connection speaking RESP `proto`, as (socket, file)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        f = s.makefile("rb")
        if proto == 3:
            s.sendall(command("HELLO", "3"))
            read_frame(f)
        return s, f

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        self.dir.cleanup()


def ask(conn, *args):
    """Sends one command on a RESP3 connection and returns (tree, raw bytes)."""
    s, f = conn
    s.sendall(command(*args))
    raw = read_raw(f)
    return read_frame(io.BytesIO(raw)), raw


def ask_raw(conn, *args):
    """Sends one command and returns the raw bytes of its reply."""
    s, f = conn
    s.sendall(command(*args))
    return read_raw(f)


# --- what goes in the file -------------------------------------------------------

def table_names(path):
    """The command names of ringkv's table, in its order."""
    with open(path) as f:
        names = re.findall(r'^\s*b"([a-z-]+)" =>', f.read(), re.M)
    if not names:
        sys.exit(f"{path}: no `b\"name\" =>` lines found")
    return names


def keep_subcommands(name, info, docs):
    """Keeps only ringkv's subcommands of container `name`, sorted by name.
    Returns the full names asked for that Redis lacks."""
    wanted = {f"{name}|{s}" for s in SUBCOMMANDS[name]}
    subs = [e for e in info[9] if e[0][1:] in wanted]
    info[9] = sorted(subs, key=lambda e: e[0])
    docs_subs = docs["subcommands"]
    docs["subcommands"] = {k: docs_subs[k] for k in sorted(docs_subs) if k in wanted}
    have = {e[0][1:] for e in info[9]}
    if have != set(docs["subcommands"]):
        sys.exit(f"{name}: COMMAND INFO and DOCS disagree on subcommands")
    return sorted(wanted - have)


def generate(binary, table):
    server = Server(binary)
    try:
        r3, r2 = server.connect(3), server.connect(2)
        version = ask(r3, "HELLO", "3")[0]["version"][1:]
        commands, absent = {}, []
        for name in sorted(set(table_names(table))):
            (info,), raw_info = ask(r3, "COMMAND", "INFO", name)
            if info is None:
                absent.append(name)
                continue
            docs_map, raw_docs = ask(r3, "COMMAND", "DOCS", name)
            # Proof that the trees hold everything: they re-encode to
            # Redis's own bytes in both protocols.
            for proto, conn, raw in [(3, None, raw_info), (2, r2, None)]:
                got = raw if conn is None else ask_raw(conn, "COMMAND", "INFO", name)
                if encode([info], proto) != got:
                    sys.exit(f"{name}: COMMAND INFO does not re-encode in RESP{proto}")
            if encode(docs_map, 3) != raw_docs or \
                    encode(docs_map, 2) != ask_raw(r2, "COMMAND", "DOCS", name):
                sys.exit(f"{name}: COMMAND DOCS does not re-encode")
            docs = docs_map[name]
            if name in SUBCOMMANDS:
                absent += keep_subcommands(name, info, docs)
            commands[name] = {"info": info, "docs": docs}
        every, _ = ask(r3, "COMMAND", "DOCS")
        groups = {n: every[n]["group"][1:] for n in sorted(every)}
        # Every subcommand Redis has, so ACL rules may name those ringkv
        # lacks (`-memory|doctor`) as Redis accepts them.
        redis_subcommands = {
            n: sorted(every[n]["subcommands"]) for n in sorted(every) if "subcommands" in every[n]
        }
        config, _ = ask(r3, "CONFIG", "GET", "*")
        config = {k: config[k][1:] for k in sorted(config)}
        for k, v in NORMALIZED_CONFIG.items():
            if k not in config:
                sys.exit(f"CONFIG GET * has no {k}")
            config[k] = v
    finally:
        server.close()
    return {
        "about": "Redis's own command and configuration metadata, as redis-server "
                 f"{version} answers it, for ringkv's COMMAND and CONFIG replies. "
                 f"Generated output: do not edit; regenerate with `{GENERATOR}` "
                 "(tools/README.md explains it and the tree format).",
        "redis_version": version,
        "generator": GENERATOR,
        "subcommands_kept": {k: sorted(v) for k, v in SUBCOMMANDS.items()},
        "absent": sorted(absent),
        "commands": commands,
        "groups": groups,
        "redis_subcommands": redis_subcommands,
        "config_normalized": sorted(NORMALIZED_CONFIG),
        "config": config,
    }


# --- writing -----------------------------------------------------------------

def pretty(value, indent=0, used=0, width=100):
    """JSON with a value on one line when it fits in `width` (after `indent`
    spaces and `used` characters of its key), else one element per line:
    short enough to read, stable enough to diff."""
    flat = json.dumps(value, ensure_ascii=False)
    if indent + used + len(flat) <= width or not isinstance(value, (list, dict)) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            key = json.dumps(k, ensure_ascii=False) + ": "
            items.append(pad + key + pretty(v, indent + 2, len(key), width))
        open_, close = "{", "}"
    else:
        items = [pad + pretty(v, indent + 2, 0, width) for v in value]
        open_, close = "[", "]"
    return open_ + "\n" + ",\n".join(items) + "\n" + " " * indent + close


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis-server", default="redis-server")
    p.add_argument("--table", default=TABLE)
    p.add_argument("--out", default=OUT)
    p.add_argument("--check", action="store_true",
                   help="compare with the file instead of writing it")
    args = p.parse_args()
    text = pretty(generate(args.redis_server, args.table)) + "\n"
    if args.check:
        with open(args.out, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit(f"{args.out} is not what {GENERATOR} writes now")
        print(f"{args.out} is up to date")
        return
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
