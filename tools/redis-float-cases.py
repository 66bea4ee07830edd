#!/usr/bin/env python3
"""Generates src/values/float_cases.txt: INCRBYFLOAT and HINCRBYFLOAT replies
recorded from a real redis-server, for the unit tests of src/values/float.rs.

Redis computes these commands in x87 80-bit `long double` and prints them
with "%.17Lf"; ringkv reproduces that arithmetic and this table is how its
tests know it does. Each case is (command, stored value or none, increment):
the script deletes the key, stores the value (SET k v, or HSET h f v), runs
INCRBYFLOAT k incr (or HINCRBYFLOAT h f incr) and records the reply, a bulk
string or an error. The cases are a hand-picked list (edge cases of parsing,
rounding and printing) and a randomized list from a fixed seed, so the file
is the same on every run.

The server is started with no config file, on a free loopback port, without
persistence, in a temporary directory, and killed at the end; the script
speaks raw RESP2 over a socket (Python's standard library only).

Usage (from the repository root):
  python3 tools/redis-float-cases.py           # rewrite src/values/float_cases.txt
  python3 tools/redis-float-cases.py --check   # exit 1 if the file is out of date
Options: --redis-server PATH, --out PATH.
"""

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

sys.set_int_max_str_digits(0)

GENERATOR = "python3 tools/redis-float-cases.py"
OUT = "src/values/float_cases.txt"
SEED = 20240607


# --- exact values -------------------------------------------------------------

def dyadic(num, exp2):
    """The exact decimal text of num * 2^exp2 (num >= 0)."""
    if exp2 >= 0:
        return str(num << exp2)
    k = -exp2
    digits = str(num * 5**k).rjust(k + 1, "0")
    text = digits[:-k] + "." + digits[-k:]
    return text.rstrip("0").rstrip(".")


def sci(x, digits):
    """A positive Fraction in scientific notation, `digits` significant
    digits, truncated (not rounded): for values just below a boundary."""
    e = 0
    while x >= 10:
        x /= 10
        e += 1
    while x < 1:
        x *= 10
        e -= 1
    n = int(x * 10 ** (digits - 1))
    s = str(n)
    return f"{s[0]}.{s[1:]}e{e}"


MIN_SUB = Fraction(1, 2**16445)               # smallest subnormal
MAX = (2**64 - 1) * Fraction(2) ** 16320     # largest finite
OVERFLOW = (2**65 - 1) * Fraction(2) ** 16319  # halfway to 2^16384


def bump(s):
    """Adds one unit in the last mantissa digit of sci()'s output."""
    mant, exp = s.split("e")
    n = int(mant.replace(".", "")) + 1
    t = str(n)
    return f"{t[0]}.{t[1:]}e{int(exp) + len(t) - len(mant.replace('.', ''))}"


# --- the cases ----------------------------------------------------------------

VALUES = [
    # everyday decimals
    "0", "1", "-1", "10.50", "0.1", "0.2", "0.3", "5.0e3", "2.0e2", "3.0e3",
    "1.5", "-3.75", "3.14159265358979323846", "2.5", "100", "1e17", "1e18",
    "1e19", "1e20", "123456789012345678", "12345678901234567890",
    "0.1e1", "1e5", "1E5", "1e+5", "1e-5", "+1", "+0.5", ".5", "-.5", "5.",
    "-5.", "007", "0.000", "00.100",
    # zeros
    "-0", "-0.0", "+0", "0e0", "-0e5", "0e99999", "0.0e-999999999",
    "0e1000000000000000000000000", "0x0p99999", "-0x0.0p-99999",
    # round at the 17th decimal, ties printed half-to-even
    "0.000003814697265625", "1.000003814697265625", "0.000011444091796875",
    "0.00000000000000001", "0.000000000000000005", "0.000000000000000015",
    "0.000000000000000025", "0.000000000000000006", "-0.000000000000000001",
    "-0.000000000000000005", "-0.00000000000000001", "0.12345678901234567",
    "0.123456789012345675", "0.99999999999999999", "0.999999999999999995",
    "99999999999999999.5", "1e-17", "5e-18", "1e-18",
    # big and small exponents
    "1e300", "1e-300", "-1e300", "1e308", "1e309", "1.7976931348623157e308",
    "1e1000", "1e4000", "-1e4000", "1e4932", "1e4933", "1e5000", "1e-4000",
    "1e-4931", "1e-4950", "1e-4951", "3.6e-4951", "1.9e-4951", "1.8e-4951",
    "1e-5000", "1e999999999999999999999", "1e-999999999999999999999",
    "1e0000000000000000000000000000003",
    # near powers of two
    "18446744073709551615", "18446744073709551616", "18446744073709551617",
    "18446744073709551618", "18446744073709551619", "18446744073709551621",
    "9223372036854775807", "-9223372036854775808", "9223372036854775808",
    "36893488147419103231", "36893488147419103233",
    # hexadecimal
    "0x1p3", "0X1P-3", "0x1.8", "0x10", "-0x1.8p1", "0x.8", "0x1.p1",
    "0xffffffffffffffffp0", "0x1ffffffffffffffffp0", "0x1.00000000000000008p0",
    "0x1.00000000000000018p0", "0x1.000000000000000080000001p0",
    "0x1p16383", "0x1p16384", "0x1p-16445", "0x1p-16446", "0x1.8p-16446",
    "0xabcdef.123p-4", "0x", "0x.", "0x.p1", "0xg", "0x1p", "0x1p+",
    "0x1e5", "0x1q", "0x1.8e3",
    # infinities and NaN
    "inf", "-inf", "+inf", "INF", "Inf", "infinity", "-Infinity", "INFINITY",
    "infinit", "infinityy", "infx", "in", "nan", "NaN", "-nan", "nan(123)",
    "nan()", "nanq",
    # garbage and whitespace
    "", " ", "abc", "1abc", " 1", "1 ", "\t1", "1\t", "\n1", "1\n", "\v1",
    "\f1", "\r1", "1\r\n", "1\x00", "\x001", "+-1", "--1", "-+1", "++1",
    "1.2.3", "1..2", "..1", ".", "-", "+", "-.", "e5", ".e5", "1e", "1e+",
    "1e-", "1e--5", "1e5.5", "1ee5", "1_000", "1,5", "0b101", "1f", "1d",
    "1L", "\xd9\xa1", "\xff", "1/2", "(1)", "1e5 ", "0x1p3 ", "- 1",
    "\u00a01",
]

PAIRS = [
    ("10.50", "0.1"), ("5.0e3", "2.0e2"), ("0.1", "0.2"), ("3.0e3", "1"),
    ("10.5", "0.1"), ("0.1", "0.1"), ("1", "0.1"), ("1e17", "0.1"),
    ("1e17", "1"), ("1e18", "1"), ("1e300", "1e300"), ("1e300", "1"),
    ("1e-300", "1"), ("1e-300", "1e-300"), ("123456789012345678", "1"),
    ("123456789012345678", "0.5"), ("1e4000", "1e4000"), ("1e4000", "-1e4000"),
    ("1e4932", "1e4932"), ("1.18e4932", "0.01e4932"), ("inf", "1"),
    ("inf", "-inf"), ("-inf", "inf"), ("inf", "inf"), ("1", "inf"),
    ("1", "-inf"), ("-0", "-0"), ("-0.0", "0"), ("-0", "0"), ("0", "-0"),
    ("-0.1", "0.1"), ("0.1", "-0.1"), ("-1e-20", "0"), ("1e-20", "-2e-20"),
    ("18446744073709551615", "1"), ("18446744073709551615", "2"),
    ("18446744073709551616", "1"), ("18446744073709551616", "3"),
    ("9223372036854775807", "1"), ("-9223372036854775808", "-1"),
    ("0.000003814697265625", "1"), ("0.000003814697265625", "0.000003814697265625"),
    ("99999999999999999", "0.5"), ("99999999999999999", "0.99999999999999999"),
    ("1e4932", "-1e4932"), ("1e-4950", "1e-4950"), ("1e-4950", "-1e-4950"),
    ("0x1p16383", "0x1p16383"), ("0x1.fffffffffffffffep16383", "0x1p16319"),
    ("0x1.fffffffffffffffep16383", "0x1p16318"),
    ("1.5", "1e-17"), ("1.5", "5e-18"), ("1.5", "-5e-18"),
    ("12345.6789", "-12345.6789"), ("1e20", "-1e20"), ("1e20", "0.1"),
    ("2.5", "2.5"), ("7", "-7.5"), ("abc", "1"), ("1", "abc"), ("", "1"),
    ("1", ""), (" 1", "1"), ("1", " 1"),
]

# Boundaries computed exactly: subnormal underflow and overflow.
HALF_SUB = MIN_SUB / 2
BOUNDARIES = [
    sci(HALF_SUB, 25), bump(sci(HALF_SUB, 25)), sci(MIN_SUB, 25),
    sci(MAX, 25), bump(sci(MAX, 25)), sci(OVERFLOW, 25), bump(sci(OVERFLOW, 25)),
    sci(OVERFLOW, 40), bump(sci(OVERFLOW, 40)), dyadic(2**64 - 1, 16320),
    "-" + dyadic(2**64 - 1, 16320),
]

# A tie between two long doubles written out in full, and the same with a
# tiny tail: glibc rounds the first to even and the second up.
TIES = [
    dyadic(2**65 + 1, -1), dyadic(2**65 + 3, -1),
    "1." + "0" * 5117, "1." + "0" * 5118, "0" * 5119, "0" * 5120,
    "18446744073709551617." + "0" * 5000 + "1",
    "18446744073709551619." + "0" * 5000 + "1",
    "18446744073709551617." + "0" * 5097 + "1",
    "18446744073709551617." + "0" * 5098 + "1",
    dyadic(2**64 + 1, 0) + "e0",
    dyadic(2 * (2**63 + 5) + 1, -1 - 70),
]


def hand_picked():
    cases = []
    for v in VALUES + BOUNDARIES + TIES:
        cases.append(("S", None, v))
        if len(v) < 200:  # the long ones once is enough
            cases.append(("S", v, "0"))
    for v in VALUES:
        cases.append(("S", v, "0.1"))
    for s, i in PAIRS:
        cases.append(("S", s, i))
    for v in VALUES[::3] + BOUNDARIES[:4]:
        cases.append(("H", None, v))
        cases.append(("H", v, "0.1"))
    for s, i in PAIRS[::2]:
        cases.append(("H", s, i))
    return cases


def randomized(rng):
    cases = []

    def decimal():
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
        point = rng.randint(0, len(digits))
        text = digits[:point] + "." + digits[point:] if point < len(digits) else digits
        if rng.random() < 0.5:
            text += "e" + str(rng.randint(-30, 30))
        return rng.choice(["", "-"]) + text

    for _ in range(150):
        cases.append(("S", decimal(), decimal()))
    # Ties between neighbours m*2^e and (m+1)*2^e, exactly, a hair above
    # and a hair below; subtracting m*2^e leaves 0 or 2^e, visible in the
    # 17 decimals because e >= -56.
    for _ in range(60):
        m = rng.randint(2**63, 2**64 - 1)
        e = rng.randint(-56, 120)
        tie = dyadic(2 * m + 1, e - 1)
        side = rng.choice(["exact", "above", "below"])
        if side == "above":
            tie += ("" if "." in tie else ".") + "0" * rng.randint(1, 40) + "1"
        elif side == "below":
            tie = dyadic_below(2 * m + 1, e - 1)
        cases.append(("S", tie, "-" + dyadic(m, e)))
    # Hexadecimal significands longer than 64 bits.
    for _ in range(30):
        n = rng.getrandbits(rng.randint(60, 90)) | 1
        cases.append(("S", f"0x{n:x}p{rng.randint(-80, 40)}", "0"))
    # Integers around 2^63 and 2^64, and big ones.
    for _ in range(30):
        a = rng.choice([2**63, 2**64, 2**70, 10**20]) + rng.randint(-3000, 3000)
        b = rng.randint(-10**6, 10**6)
        cases.append(("S", str(a), str(b)))
    # Huge and tiny exponents.
    for _ in range(20):
        big = f"{rng.randint(1, 99999)}e{rng.randint(300, 4927)}"
        tiny = f"{rng.randint(1, 99999)}e-{rng.randint(300, 4940)}"
        cases.append(("S", big, rng.choice([big, "1", "-" + big])))
        cases.append(("S", tiny, rng.choice(["1", tiny, "0"])))
    for _ in range(30):
        cases.append(("H", decimal(), decimal()))
    return cases


def dyadic_below(num, exp2):
    """A decimal string a hair below num * 2^exp2 (its exact text with the
    last digit lowered and many nines appended)."""
    text = dyadic(num, exp2)
    if "." not in text:
        text += "."
    digits = list(text)
    i = len(digits) - 1
    while digits[i] == "0" or digits[i] == ".":
        if digits[i] == "0":
            digits[i] = "9"
        i -= 1
    digits[i] = str(int(digits[i]) - 1)
    out = "".join(digits).rstrip(".")
    return out + ("" if "." in out else ".") + "9" * 30


# --- the server ---------------------------------------------------------------

class Server:
    """A pristine redis-server on a free loopback port, killed on close."""

    def __init__(self, binary):
        self.dir = tempfile.TemporaryDirectory(prefix="redis-float-")
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
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                self.file = self.sock.makefile("rb")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    sys.exit(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else a.encode("latin-1")
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)

    def reply(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"$":
            return ("ok", self.file.read(int(rest) + 2)[:-2].decode())
        if kind == b"-":
            return ("err", rest.decode())
        if kind in (b"+", b":"):
            return ("other", rest.decode())
        raise RuntimeError(f"unexpected reply {line!r}")

    def run(self, cmd, stored, incr):
        self.send("DEL", "k")
        self.reply()
        if cmd == "S":
            if stored is not None:
                self.send("SET", "k", stored)
                self.reply()
            self.send("INCRBYFLOAT", "k", incr)
        else:
            if stored is not None:
                self.send("HSET", "k", "f", stored)
                self.reply()
            self.send("HINCRBYFLOAT", "k", "f", incr)
        return self.reply()

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        self.dir.cleanup()


# --- the file -----------------------------------------------------------------

def quoted(s):
    """The latin-1 text s quoted for float_cases.txt: \\\\, \\" and \\xHH escapes."""
    out = []
    for c in s.encode("latin-1"):
        if c in (0x22, 0x5C):
            out.append("\\" + chr(c))
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\x{c:02x}")
    return '"' + "".join(out) + '"'


def generate(binary):
    rng = random.Random(SEED)
    cases = hand_picked() + randomized(rng)
    seen, unique = set(), []
    for c in cases:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    server = Server(binary)
    try:
        lines = []
        for cmd, stored, incr in unique:
            kind, text = server.run(cmd, stored, incr)
            if kind == "other":
                raise RuntimeError(f"unexpected reply to {cmd} {stored!r} {incr!r}: {text}")
            stored_col = "none" if stored is None else quoted(stored)
            lines.append("\t".join([cmd, stored_col, quoted(incr), kind, text]) + "\n")
    finally:
        server.close()
    return (
        "# INCRBYFLOAT (S) and HINCRBYFLOAT (H) replies of redis-server 7.0.15 on x86-64 Linux,\n"
        f"# {len(lines)} cases, one per line, tab-separated: command, stored value (none, or\n"
        "# quoted with the escapes \\\\ \\\" \\xHH), increment (quoted likewise), ok or err, reply.\n"
        f"# Generated by `{GENERATOR}`; do not edit.\n" + "".join(lines)
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis-server", default="redis-server")
    p.add_argument("--out", default=OUT)
    p.add_argument("--check", action="store_true",
                   help="compare with the file instead of writing it")
    args = p.parse_args()
    text = generate(args.redis_server)
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
