"""redis-py at its default settings against every ringkv node.

Run by tests/redis_py.rs (`cargo test --test redis_py`), which sets:

  REDIS_PY_NODES          host:port,host:port,...  the nodes' client addresses
  REDIS_PY_PROTOCOL       "" for redis-py's default, or "2"
  REDIS_PY_WIRE_PROTOCOL  the protocol redis-py was seen asking for (2 or 3)
  REDIS_PY_TARGET         "ringkv", or "redis" when checking these tests
                          against redis-server

Every client is `redis.Redis(host, port)` with no other option (plus
`protocol=2` in the second run): what an application gets by default.
"""

import os
import time
import uuid

import pytest
import redis

NODES = [
    (host, int(port))
    for host, port in (a.rsplit(":", 1) for a in os.environ["REDIS_PY_NODES"].split(","))
]
PROTOCOL = os.environ.get("REDIS_PY_PROTOCOL") or None
WIRE_PROTOCOL = os.environ["REDIS_PY_WIRE_PROTOCOL"]
TARGET = os.environ.get("REDIS_PY_TARGET", "ringkv")


def connect(node):
    host, port = node
    if PROTOCOL:
        return redis.Redis(host, port, protocol=int(PROTOCOL))
    return redis.Redis(host, port)


@pytest.fixture(params=range(len(NODES)), ids=lambda i: f"node{i + 1}")
def r(request):
    """A client of one node; every test that takes it runs against each node."""
    client = connect(NODES[request.param])
    yield client
    client.close()


@pytest.fixture
def every():
    """A client of every node."""
    clients = [connect(n) for n in NODES]
    yield clients
    for c in clients:
        c.close()


@pytest.fixture
def key(request):
    """A key prefix of this test alone."""
    return f"py:{request.node.name}:{uuid.uuid4().hex[:8]}:"


# --- the connection itself ---------------------------------------------------


def test_a_default_connection_works_and_speaks_the_protocol_it_asked_for(r):
    assert r.ping() is True
    assert str(r.client_info()["resp"]) == WIRE_PROTOCOL


def test_ping_and_echo(r):
    assert r.ping() is True
    assert r.echo("hello") == b"hello"
    assert r.echo("") == b""


# --- strings and keys ---------------------------------------------------------


def test_set_get_delete_exists(r, key):
    k = key + "k"
    assert r.get(k) is None
    assert r.set(k, "v") is True
    assert r.get(k) == b"v"
    assert r.exists(k, k, key + "missing") == 2
    assert r.delete(k, key + "missing") == 1
    assert r.get(k) is None
    assert r.exists(k) == 0


def test_mset_mget_unlink_touch(r, key):
    a, b, c = key + "a", key + "b", key + "c"
    assert r.mset({a: "1", b: "2"}) is True
    assert r.mget([a, b, c]) == [b"1", b"2", None]
    assert r.touch(a, b, c) == 2
    assert r.unlink(a, b, c) == 2
    assert r.mget(a, b) == [None, None]


def test_set_with_nx_xx_and_get(r, key):
    k, m = key + "k", key + "missing"
    assert r.set(k, "1", nx=True) is True
    assert r.set(k, "2", nx=True) is None
    assert r.get(k) == b"1"
    assert r.set(m, "x", xx=True) is None
    assert r.exists(m) == 0
    assert r.set(k, "3", xx=True) is True
    assert r.set(k, "4", get=True) == b"3"
    assert r.set(m, "v", get=True) is None
    assert r.get(m) == b"v"
    assert r.set(k, "5", nx=True, get=True) == b"4"
    assert r.get(k) == b"4"
    # redis-py refuses nx=True with xx=True itself; the server's answer:
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", k, "6", "NX", "XX")


def test_setnx_getset_append_strlen(r, key):
    k, n = key + "k", key + "n"
    assert r.setnx(k, "1") is True
    assert r.setnx(k, "2") is False
    assert r.get(k) == b"1"
    assert r.getset(n, "a") is None
    assert r.getset(n, "b") == b"a"
    assert r.append(key + "fresh", "ab") == 2
    assert r.append(key + "fresh", "cd") == 4
    assert r.get(key + "fresh") == b"abcd"
    assert r.strlen(key + "fresh") == 4
    assert r.strlen(key + "missing") == 0


def test_getrange_and_setrange(r, key):
    k, z = key + "k", key + "z"
    r.set(k, "Hello World")
    assert r.getrange(k, 0, 4) == b"Hello"
    assert r.getrange(k, -5, -1) == b"World"
    assert r.getrange(k, 100, 200) == b""
    assert r.getrange(key + "missing", 0, -1) == b""
    assert r.setrange(k, 6, "Redis") == 11
    assert r.get(k) == b"Hello Redis"
    assert r.setrange(z, 3, "x") == 4
    assert r.get(z) == b"\x00\x00\x00x"
    with pytest.raises(redis.ResponseError, match="offset is out of range"):
        r.setrange(k, -1, "x")


def test_msetnx_sets_all_or_nothing(r, key):
    a, b, c = key + "a", key + "b", key + "c"
    assert r.msetnx({a: "1", b: "2"}) is True
    assert r.msetnx({b: "3", c: "4"}) is False
    assert r.mget(a, b, c) == [b"1", b"2", None]


def test_a_write_through_one_node_reads_back_through_the_others(every, key):
    k = key + "k"
    assert every[0].set(k, "from node 1") is True
    for c in every[1:]:
        assert c.get(k) == b"from node 1"
    assert every[-1].delete(k) == 1
    for c in every:
        assert c.get(k) is None


def test_binary_safe_keys_and_values(r, every, key):
    value = bytes(range(256))
    binary_key = key.encode() + bytes(range(256))
    assert r.set(key + "v", value) is True
    assert r.set(binary_key, value[::-1]) is True
    for c in every:
        assert c.get(key + "v") == value
        assert c.get(binary_key) == value[::-1]
    assert r.append(key + "v", b"\x00\xff") == 258
    assert r.getrange(key + "v", 254, -1) == b"\xfe\xff\x00\xff"
    assert r.mget([key + "v", binary_key]) == [value + b"\x00\xff", value[::-1]]


def test_keys_with_spaces_and_unicode(r, every, key):
    spaced = key + "a key with spaces"
    uni = key + "ключ 🔑 clé"
    assert r.set(spaced, "v") is True
    assert r.set(uni, "ünïcödé ✓") is True
    assert r.exists(spaced, uni) == 2
    for c in every:
        assert c.get(spaced) == b"v"
        assert c.get(uni).decode() == "ünïcödé ✓"


# --- flushing -----------------------------------------------------------------


@pytest.mark.parametrize("flush", ["flushdb", "flushall"])
def test_a_flush_empties_every_node(r, every, key, flush):
    for i, c in enumerate(every):
        c.set(f"{key}{i}", i)
    assert getattr(r, flush)() is True
    # FLUSHDB/FLUSHALL's OK means the data is gone, as in Redis: no waiting.
    assert [c.dbsize() for c in every] == [0] * len(every)
    assert r.set(key + "after", "v") is True
    assert [c.get(key + "after") for c in every] == [b"v"] * len(every)


# --- pipelines and transactions ----------------------------------------------


def queue_mixed_batch(pipe, key, n=200):
    """Queues `n` mixed commands on `pipe` over a few keys; returns the
    results they must have, in order, and the final values."""
    model, expected = {}, []
    for i in range(n):
        k = f"{key}{i % 7}"
        op = i % 10
        if op == 0:
            pipe.set(k, str(i))
            model[k] = str(i).encode()
            expected.append(True)
        elif op == 1:
            pipe.get(k)
            expected.append(model.get(k))
        elif op == 2:
            pipe.append(k, "x")
            model[k] = model.get(k, b"") + b"x"
            expected.append(len(model[k]))
        elif op == 3:
            pipe.strlen(k)
            expected.append(len(model.get(k, b"")))
        elif op == 4:
            pipe.exists(k)
            expected.append(int(k in model))
        elif op == 5:
            pipe.getrange(k, 0, 1)
            expected.append(model.get(k, b"")[:2])
        elif op == 6:
            pipe.delete(k)
            expected.append(int(k in model))
            model.pop(k, None)
        elif op == 7:
            pipe.mget([k, key + "none"])
            expected.append([model.get(k), None])
        elif op == 8:
            pipe.setnx(k, "n")
            expected.append(k not in model)
            model.setdefault(k, b"n")
        else:
            pipe.getset(k, f"g{i}")
            expected.append(model.get(k))
            model[k] = f"g{i}".encode()
    return expected, model


@pytest.mark.parametrize("transaction", [True, False], ids=["multi-exec", "plain"])
def test_a_pipeline_of_200_mixed_commands_answers_in_order(r, every, key, transaction):
    if transaction:
        pipe = r.pipeline()  # the default: MULTI ... EXEC
    else:
        pipe = r.pipeline(transaction=False)
    with pipe:
        expected, model = queue_mixed_batch(pipe, key)
        assert pipe.execute() == expected
    for c in every:
        assert c.mget([f"{key}{i}" for i in range(7)]) == [
            model.get(f"{key}{i}") for i in range(7)
        ]


def test_transaction_with_watch_retries_when_the_key_changes(r, every, key):
    """redis-py's transaction() WATCHes, runs the function, and retries it
    when EXEC finds a watched key changed (ringkv: a version check, see
    README's "Transactions")."""
    k = key + "counter"
    r.set(k, "0")
    attempts = []

    def add_one(pipe):
        attempts.append(1)
        value = int(pipe.get(k))
        if len(attempts) == 1:
            every[-1].set(k, "10")  # a concurrent change: EXEC must fail
        pipe.multi()
        pipe.set(k, value + 1)

    r.transaction(add_one, k)
    assert len(attempts) == 2
    assert [c.get(k) for c in every] == [b"11"] * len(every)


# --- connection and server housekeeping --------------------------------------


def test_client_setname_getname_id_list_info(r):
    assert r.client_setname("py-client") is True
    assert r.client_getname() == "py-client"
    cid = r.client_id()
    assert isinstance(cid, int) and cid > 0
    info = r.client_info()
    assert info["id"] == cid
    assert info["name"] == "py-client"
    mine = [c for c in r.client_list() if str(c["id"]) == str(cid)]
    assert len(mine) == 1 and mine[0]["name"] == "py-client"


def test_info_config_time_command_count(r):
    info = r.info()
    assert isinstance(info, dict)
    assert "redis_version" in info
    assert "maxmemory" in r.config_get("maxmemory")
    seconds, micros = r.time()
    assert 0 <= micros < 1_000_000
    assert abs(seconds + micros / 1e6 - time.time()) < 5
    assert r.command_count() > 0


# --- values: expiry, counters, hashes, sets ----------------------------------


def test_expiry_options_and_commands(r, every, key):
    k, m = key + "k", key + "missing"
    assert r.set(k, "v", ex=100) is True
    assert 99 <= r.ttl(k) <= 100
    assert 99_000 <= r.pttl(k) <= 100_000
    assert r.set(k, "w", keepttl=True) is True
    assert r.ttl(k) > 0
    assert r.persist(k) is True
    assert r.ttl(k) == -1
    assert r.expire(k, 50) is True
    assert r.expire(k, 500, gt=True) is True
    assert r.expire(k, 5, gt=True) is False
    assert abs(r.expiretime(k) - (time.time() + 500)) < 5
    assert r.getex(k, px=200_000) == b"w"
    assert r.getdel(k) == b"w"
    assert r.ttl(k) == -2
    assert r.expire(m, 10) is False
    assert r.set(k, "gone", px=1) is True
    deadline = time.time() + 5
    while any(c.get(k) is not None for c in every):
        assert time.time() < deadline, "the key never expired on every node"
        time.sleep(0.01)


def test_counters_and_their_errors(r, every, key):
    k, s = key + "c", key + "s"
    assert r.incr(k) == 1
    assert r.incrby(k, 41) == 42
    assert r.decr(k) == 41
    assert r.decrby(k, 1) == 40
    assert all(c.get(k) == b"40" for c in every)
    assert r.incrbyfloat(k, 0.5) == 40.5
    r.set(s, "text")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.incr(s)
    r.set(k, str(2**63 - 1))
    with pytest.raises(redis.ResponseError, match="would overflow"):
        r.incr(k)


def test_hashes(r, every, key):
    h = key + "h"
    assert r.hset(h, mapping={"a": "1", "b": "2"}) == 2
    assert r.hset(h, "a", "3") == 0
    assert r.hget(h, "a") == b"3"
    assert r.hmget(h, ["a", "x", "b"]) == [b"3", None, b"2"]
    assert r.hgetall(h) == {b"a": b"3", b"b": b"2"}
    assert all(c.hgetall(h) == {b"a": b"3", b"b": b"2"} for c in every)
    assert sorted(r.hkeys(h)) == [b"a", b"b"]
    assert sorted(r.hvals(h)) == [b"2", b"3"]
    assert r.hlen(h) == 2
    assert r.hexists(h, "b") is True
    assert r.hsetnx(h, "a", "9") == 0
    assert r.hsetnx(h, "c", "9") == 1
    assert r.hincrby(h, "n", 5) == 5
    assert r.hincrbyfloat(h, "f", 1.5) == 1.5
    assert r.hstrlen(h, "c") == 1
    cursor, fields = r.hscan(h)
    assert cursor == 0 and fields[b"n"] == b"5"
    assert r.hdel(h, "a", "b", "zz") == 2
    assert r.hlen(h) == 3


def test_sets(r, every, key):
    s, t, d = key + "s", key + "t", key + "d"
    assert r.sadd(s, "a", "b", "c", "a") == 3
    assert r.srem(s, "a", "z") == 1
    assert r.smembers(s) == {b"b", b"c"}
    assert all(c.smembers(s) == {b"b", b"c"} for c in every)
    assert bool(r.sismember(s, "b")) is True
    assert [bool(x) for x in r.smismember(s, ["a", "b"])] == [False, True]
    assert r.scard(s) == 2
    assert r.sadd(t, "c", "d") == 2
    assert r.sinter([s, t]) == {b"c"}
    assert r.sunion([s, t]) == {b"b", b"c", b"d"}
    assert r.sdiff([s, t]) == {b"b"}
    assert r.sinterstore(d, [s, t]) == 1
    assert r.smove(s, t, "b") is True
    assert r.srandmember(t) in (b"b", b"c", b"d")
    assert r.spop(t) in (b"b", b"c", b"d")
    cursor, members = r.sscan(t)
    assert cursor == 0 and len(members) == 2


def test_types_and_wrongtype_across_families(r):
    # No brackets in the prefix: it is a MATCH pattern below.
    key = f"py-types-{uuid.uuid4().hex[:8]}:"
    h, s, k = key + "h", key + "s", key + "k"
    r.hset(h, "f", "v")
    r.sadd(s, "m")
    r.set(k, "v")
    assert [r.type(x) for x in (h, s, k, key + "none")] == [b"hash", b"set", b"string", b"none"]
    for call in (lambda: r.get(h), lambda: r.sadd(h, "x"), lambda: r.hget(s, "f"), lambda: r.hset(k, "f", "v")):
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            call()
    assert set(r.scan_iter(match=key + "*", _type="set")) == {s.encode()}
    assert set(r.scan_iter(match=key + "*", _type="hash")) == {h.encode()}


def test_rename_and_copy_are_refused_with_the_reason(r, key):
    k = key + "k"
    r.set(k, "v")
    if TARGET == "redis":
        assert r.rename(k, key + "k2") is True
        return
    for call in (lambda: r.rename(k, key + "k2"), lambda: r.copy(k, key + "k3")):
        with pytest.raises(redis.ResponseError, match="not supported by ringkv"):
            call()
    assert r.get(k) == b"v"


def test_an_acl_user_logs_in_with_username_and_password_on_every_node(every, key):
    """redis-py's `username=`/`password=`: HELLO 3 AUTH (or AUTH user pass
    with protocol 2) as a user made through one node, refused what its
    rules exclude on every node."""
    user = "py-" + uuid.uuid4().hex[:8]
    admin = every[0]
    assert admin.acl_setuser(
        user, enabled=True, passwords=["+py-secret"], keys=[key + "*"],
        commands=["+@read", "+@write", "-@dangerous"],
    ) is True
    for node in NODES:
        host, port = node
        options = {"protocol": int(PROTOCOL)} if PROTOCOL else {}
        c = redis.Redis(host, port, username=user, password="py-secret", **options)
        assert c.set(key + "a", "1") is True
        assert c.get(key + "a") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to run the 'flushall' command"):
            c.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to access one of the keys"):
            c.get("elsewhere")
        c.close()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(*NODES[-1], username=user, password="wrong").ping()
    assert admin.acl_deluser(user) == 1
