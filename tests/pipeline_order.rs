//! Pipelines against Redis: seeded random batches of commands over a few
//! keys of every type, each batch sent in one write, with MULTI/EXEC
//! blocks among them, to a reference `redis-server` and to ringkv (a lone
//! node, and a 3-node cluster through one node and through all three in
//! turn), comparing every reply byte for byte (RESP2, and RESP3 after
//! `HELLO 3` on the lone node).
//!
//! A node runs a connection's pipelined commands concurrently where their
//! keys allow it (`resp::order`), so it must show a client exactly what
//! Redis's one-after-the-other execution shows: a batch whose commands
//! start in another order, or a read that overtakes a write, gives another
//! reply here. This is how the DEL stamped after the SET behind it (fixed
//! in `resp/ordered.rs`) would have been found.
//!
//! `PIPELINE_SEED=n` replays one seed (its batches are printed on failure);
//! `PIPELINE_SEEDS=n` runs n (default 40).

mod common;

#[path = "differential/frame.rs"]
mod frame;
#[path = "differential/wire.rs"]
mod wire;

use common::redis_server::RedisServer;
use common::Cluster;
use wire::{Conn, Outcome};

/// Keys shared by every command, so that types collide (WRONGTYPE) and
/// commands on one key follow each other closely.
const KEYS: [&str; 5] = ["a", "b", "n", "h", "s"];

/// splitmix64: a small seeded generator, so that a seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn key(&mut self) -> String {
        KEYS[self.below(KEYS.len())].to_string()
    }

    fn small(&mut self) -> String {
        (self.below(7) as i64 - 2).to_string()
    }
}

/// One random command whose reply does not depend on time or on the
/// order of an unordered collection.
fn command(rng: &mut Rng) -> Vec<String> {
    let k = rng.key();
    let f = format!("f{}", rng.below(3));
    let m = format!("m{}", rng.below(3));
    let v = match rng.below(3) {
        0 => rng.small(),
        1 => "x".to_string(),
        _ => format!("v{}", rng.below(100)),
    };
    let words: Vec<String> = match rng.below(48) {
        0 | 1 => vec!["SET".into(), k, v],
        2 => vec!["SET".into(), k, v, "PX".into(), "100000".into()],
        3 => vec!["SET".into(), k, v, "NX".into()],
        4 => vec!["SET".into(), k, v, "XX".into(), "GET".into()],
        5 | 6 => vec!["GET".into(), k],
        7 => vec!["DEL".into(), k, rng.key()],
        8 => vec!["INCR".into(), k],
        9 => vec!["INCRBY".into(), k, rng.small()],
        10 => vec!["APPEND".into(), k, v],
        11 => vec!["HSET".into(), k, f, v],
        12 => vec!["HGET".into(), k, f],
        13 => vec!["HDEL".into(), k, f],
        14 => vec!["HINCRBY".into(), k, f, rng.small()],
        15 => vec!["SADD".into(), k, m],
        16 => vec!["SREM".into(), k, m],
        17 => vec!["SISMEMBER".into(), k, m],
        18 => vec!["EXISTS".into(), k, rng.key()],
        19 => vec!["TYPE".into(), k],
        20 => vec!["MGET".into(), k, rng.key()],
        21 => vec!["GETDEL".into(), k],
        22 => vec!["STRLEN".into(), k],
        23 => vec!["MSET".into(), k, v, rng.key(), "y".into()],
        24 => vec!["EXPIRE".into(), k, "100000".into()],
        25 => vec!["PERSIST".into(), k],
        26 => vec!["SMOVE".into(), k, rng.key(), m],
        27 => vec!["HSETNX".into(), k, f, v],
        28 => vec!["DECR".into(), k],
        29 => vec!["INCRBYFLOAT".into(), k, "1.5".into()],
        30 => vec!["HINCRBYFLOAT".into(), k, f, "-0.25".into()],
        // Not INCRBY near the 64-bit limit: a counter refuses an increment
        // that would take this node's own share past it even when the sum
        // stays in range, where Redis answers (docs/data-types.md,
        // "Overflow"); tests/differential.rs has the overflow cases.
        31 => vec!["DECRBY".into(), k, rng.small()],
        32 => vec!["GETEX".into(), k, "PERSIST".into()],
        33 => vec!["GETEX".into(), k, "PX".into(), "100000".into()],
        34 => vec!["SETRANGE".into(), k, rng.below(4).to_string(), v],
        35 => vec!["GETRANGE".into(), k, "0".into(), "2".into()],
        36 => vec!["HMGET".into(), k, f, "f1".into()],
        37 => vec!["SMISMEMBER".into(), k, m, "m1".into()],
        38 => vec!["HLEN".into(), k],
        39 => vec!["HSTRLEN".into(), k, f],
        40 => vec!["HEXISTS".into(), k, f],
        // GT and LT between two relative deadlines of the same length
        // depend on the milliseconds between them: they compare fixed
        // deadlines (2100 and 2101) here, later than any relative one.
        41 => {
            let when = ["NX", "XX", "GT", "LT"][rng.below(4)];
            let at = ["4102444800", "4133980800"][rng.below(2)];
            vec!["EXPIREAT".into(), k, at.into(), when.into()]
        }
        42 => vec!["SETNX".into(), k, v],
        43 => vec!["SETEX".into(), k, "100000".into(), v],
        44 => vec!["MSETNX".into(), k, v, rng.key(), "z".into()],
        45 => vec!["SUNIONSTORE".into(), k, rng.key(), rng.key()],
        46 => vec!["SINTERSTORE".into(), k, rng.key(), rng.key()],
        _ => vec!["SCARD".into(), k],
    };
    words
}

/// A batch: a few commands, sometimes with a MULTI ... EXEC block.
fn batch(rng: &mut Rng) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(8) {
        if rng.below(6) == 0 {
            out.push(vec!["MULTI".to_string()]);
            for _ in 0..rng.below(4) {
                out.push(command(rng));
            }
            out.push(vec!["EXEC".to_string()]);
        } else {
            out.push(command(rng));
        }
    }
    out
}

/// Sends `cmds` in one write on `conn`; the bytes of their replies, one
/// string of them for the batch (compared whole), and the outcomes (for
/// the failure message). A reply that does not come fails the test.
fn run(conn: &mut Conn, cmds: &[Vec<String>]) -> (Vec<u8>, Vec<Outcome>) {
    let cmds: Vec<Vec<Vec<u8>>> = cmds
        .iter()
        .map(|c| c.iter().map(|w| w.clone().into_bytes()).collect())
        .collect();
    let outcomes = conn.pipeline(&cmds);
    let mut raw = Vec::new();
    for o in &outcomes {
        match o {
            Outcome::Reply(bytes, _) => raw.extend_from_slice(bytes),
            other => panic!("no reply to a command of {cmds:?}: {}", other.describe()),
        }
    }
    assert!(
        !conn.has_leftover(),
        "more bytes than the replies to {cmds:?}"
    );
    (raw, outcomes)
}

/// Runs seed after seed: each one starts from an empty keyspace, sends
/// its batches to `redis` and to the connections of `ours` in turn (all in
/// RESP3 after `HELLO 3` when `resp3`), and compares the replies' bytes.
fn compare(ours: &[String], redis: &str, resp3: bool) {
    let seeds: Vec<u64> = match std::env::var("PIPELINE_SEED") {
        Ok(s) => vec![s.parse().expect("PIPELINE_SEED is a number")],
        Err(_) => {
            let n = std::env::var("PIPELINE_SEEDS").map_or(40, |s| s.parse().expect("a number"));
            (0..n).collect()
        }
    };
    let mut reference = Conn::connect(redis).expect("connect to redis");
    let mut ours: Vec<Conn> = ours
        .iter()
        .map(|a| Conn::connect(a).expect("connect to a node"))
        .collect();
    if resp3 {
        // HELLO's own reply names the server: not compared.
        let hello = [vec!["HELLO".to_string(), "3".to_string()]];
        for conn in ours.iter_mut().chain(std::iter::once(&mut reference)) {
            run(conn, &hello);
        }
    }
    let flush = vec![vec!["DEL".to_string()]
        .into_iter()
        .chain(KEYS.iter().map(|k| k.to_string()))
        .collect::<Vec<_>>()];
    for seed in seeds {
        let mut rng = Rng(seed);
        run(&mut reference, &flush);
        run(&mut ours[0], &flush);
        let mut sent = Vec::new();
        for i in 0..30 {
            let cmds = batch(&mut rng);
            sent.push(cmds.clone());
            let (want, want_replies) = run(&mut reference, &cmds);
            let node = i % ours.len();
            let (got, got_replies) = run(&mut ours[node], &cmds);
            if got != want {
                let history: Vec<String> = sent
                    .iter()
                    .map(|b| {
                        let b: Vec<String> = b.iter().map(|w| w.join(" ")).collect();
                        b.join("; ")
                    })
                    .collect();
                panic!(
                    "seed {seed}, batch {i} (through node {node}, RESP{}):\n  batches so far:\n    {}\n  \
                     redis:  {want_replies:?}\n  ringkv: {got_replies:?}\n  redis bytes:  {:?}\n  ringkv bytes: {:?}",
                    if resp3 { 3 } else { 2 },
                    history.join("\n    "),
                    String::from_utf8_lossy(&want),
                    String::from_utf8_lossy(&got),
                );
            }
        }
    }
}

#[test]
fn a_lone_node_answers_random_pipelines_as_redis_does() {
    let redis = RedisServer::start();
    let c = Cluster::start(&["solo"], &[]);
    compare(&[c.nodes[0].client.clone()], &redis.addr, false);
}

/// The same in RESP3, after `HELLO 3` on both sides.
#[test]
fn a_lone_node_answers_random_pipelines_as_redis_does_in_resp3() {
    let redis = RedisServer::start();
    let c = Cluster::start(&["solo"], &[]);
    compare(&[c.nodes[0].client.clone()], &redis.addr, true);
}

#[test]
fn a_cluster_answers_random_pipelines_as_redis_does() {
    let redis = RedisServer::start();
    let c = Cluster::start(&["a", "b", "c"], &[]);
    let ours: Vec<String> = c.nodes.iter().map(|n| n.client.clone()).collect();
    compare(&ours, &redis.addr, false);
}

/// With R = 1 a node answers some reads during dispatch, ahead of the
/// commands still in flight: only those that no write in flight concerns.
/// W = 3: the batches go through each node in turn, and with R = 1 and
/// W = 2 a read through the third replica may come before an earlier
/// batch's write reached it (R + W must exceed N for a read to see it; a
/// CI run on a busy machine found that: `SISMEMBER` answered 0 where the
/// key already held a hash).
#[test]
fn a_cluster_with_r_1_answers_random_pipelines_as_redis_does() {
    let redis = RedisServer::start();
    let c = Cluster::start(
        &["a", "b", "c"],
        &["--set", "read_quorum=1", "--set", "write_quorum=3"],
    );
    let ours: Vec<String> = c.nodes.iter().map(|n| n.client.clone()).collect();
    compare(&ours, &redis.addr, false);
}
