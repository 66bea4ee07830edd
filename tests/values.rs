//! Values that merge, through real processes: counters, hashes, sets and
//! expiry written on both sides of a 2|3 partition all survive the heal,
//! every replica ends with the same state, and a replica killed with -9
//! comes back with it. Large hashes and sets answer as redis-server does.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use rand::{Rng, SeedableRng};
use ringkv::history::{History, Observed, Op, Outcome};
use ringkv::resp::codec::Reply;

/// A sorted list of the strings in a reply.
fn sorted(r: &Reply) -> Vec<String> {
    let mut v = strings(r);
    v.sort();
    v
}

/// HGETALL as sorted `field=value` pairs.
fn pairs(r: &Reply) -> Vec<String> {
    let flat = strings(r);
    let mut v: Vec<String> = flat
        .chunks(2)
        .map(|p| format!("{}={}", p[0], p[1]))
        .collect();
    v.sort();
    v
}

/// What every replica of `key` holds locally (version and digest), read
/// from each of them without a quorum: equal when they converged.
fn replica_states(c: &Cluster, key: &str) -> Vec<Reply> {
    let pref = strings(&c.client(0).cmd(&["RINGKV", "PREFLIST", key]));
    pref.iter()
        .map(|name| c.client(c.index(name)).cmd(&["RINGKV", "LOCAL", key]))
        .collect()
}

fn converged(c: &Cluster, keys: &[&str]) -> bool {
    keys.iter().all(|k| {
        let states = replica_states(c, k);
        states.windows(2).all(|w| w[0] == w[1])
    })
}

/// A key named `prefix` plus a number whose replicas include n1 and n2,
/// the left side of the partition: there, both of its replicas but one
/// are reachable, so what a left-side command reads is exact. On the
/// right side one replica and two stand-ins answer, so there only blind
/// writes (INCRBY, HSET, SADD, SET, DEL) are made and their counts are
/// not checked: a stand-in that holds nothing of the key may count an
/// element as new (docs/data-types.md).
fn key_on_left(c: &Cluster, prefix: &str) -> String {
    key_with_replicas_on(c, prefix, &["n1", "n2"], 2)
}

/// The keys of the test.
struct Keys {
    hits: String,
    reset: String,
    user: String,
    tags: String,
    session: String,
    gone: String,
}

/// The state every node must answer after the heal (see the test).
fn check_everywhere(c: &Cluster, k: &Keys) -> bool {
    (0..c.nodes.len()).all(|i| {
        let mut n = c.client(i);
        n.cmd(&["GET", &k.hits]) == bulk("39")
            && n.cmd(&["GET", &k.reset]) == bulk("101")
            && pairs(&n.cmd(&["HGETALL", &k.user]))
                == [
                    "base=1",
                    "left=L",
                    "right=R",
                    "shared=from-right",
                    "views=12",
                ]
            && sorted(&n.cmd(&["SMEMBERS", &k.tags])) == ["base", "both", "flip", "left", "right"]
            && n.cmd(&["GET", &k.session]) == bulk("s2")
            && n.cmd(&["TTL", &k.session]) == Reply::Integer(-1)
            && n.cmd(&["TYPE", &k.gone]) == Reply::simple("none")
    })
}

/// Both sides of a 2|3 partition update the same counter, hash and set;
/// after the heal nothing is lost: every increment counts, fields and
/// members set on either side are all there, a field set on both sides
/// holds the later value, a member removed on one side and added later on
/// the other is present, a SET on one side beats an older EXPIRE on the
/// other, a DEL beats an older SADD, and a SET of a counter on one side
/// discards exactly the other side's increments made before it. A replica killed with -9 and
/// restarted holds the same.
#[test]
fn updates_on_both_sides_of_a_partition_all_survive_the_heal() {
    let names = ["n1", "n2", "n3", "n4", "n5"];
    // Anti-entropy every second: the replicas that no read repaired
    // converge quickly too.
    let mut c = Cluster::start(
        &names,
        &[
            "--fault-injection",
            "--set",
            "anti_entropy_interval_ms=1000",
        ],
    );
    let k = Keys {
        hits: key_on_left(&c, "hits"),
        reset: key_on_left(&c, "reset"),
        user: key_on_left(&c, "user"),
        tags: key_on_left(&c, "tags"),
        session: key_on_left(&c, "session"),
        gone: key_on_left(&c, "gone"),
    };
    let (hits, user, tags, session, gone) = (
        &k.hits[..],
        &k.user[..],
        &k.tags[..],
        &k.session[..],
        &k.gone[..],
    );
    let mut left = c.client(0);
    let mut right = c.client(3);
    assert_eq!(left.cmd(&["INCRBY", hits, "10"]), Reply::Integer(10));
    let reset = &k.reset[..];
    assert_eq!(left.cmd(&["INCRBY", reset, "10"]), Reply::Integer(10));
    assert_eq!(
        left.cmd(&["HSET", user, "base", "1", "shared", "0"]),
        Reply::Integer(2)
    );
    assert_eq!(
        left.cmd(&["HINCRBY", user, "views", "2"]),
        Reply::Integer(2)
    );
    assert_eq!(
        left.cmd(&["SADD", tags, "base", "drop", "flip"]),
        Reply::Integer(3)
    );
    assert_eq!(left.cmd(&["SET", session, "s"]), Reply::ok());
    assert_eq!(left.cmd(&["SADD", gone, "x"]), Reply::Integer(1));

    split(&c, &["n1", "n2"]);

    // Left first: +5 three times; its own field and the shared one; its
    // own members, "drop" and "flip" removed; an expiry; a member added to
    // the key the right will delete.
    for _ in 0..3 {
        assert!(matches!(
            left.cmd(&["INCRBY", hits, "5"]),
            Reply::Integer(_)
        ));
    }
    assert_eq!(left.cmd(&["INCRBY", reset, "5"]), Reply::Integer(15));
    assert_eq!(
        left.cmd(&["HSET", user, "left", "L", "shared", "from-left"]),
        Reply::Integer(1)
    );
    assert_eq!(
        left.cmd(&["HINCRBY", user, "views", "4"]),
        Reply::Integer(6)
    );
    assert_eq!(left.cmd(&["SADD", tags, "left", "both"]), Reply::Integer(2));
    assert_eq!(left.cmd(&["SREM", tags, "drop", "flip"]), Reply::Integer(2));
    assert_eq!(left.cmd(&["EXPIRE", session, "1000"]), Reply::Integer(1));
    assert_eq!(left.cmd(&["SADD", gone, "y"]), Reply::Integer(1));
    // Right, later: +7 twice; its own field and the shared one again; its
    // own members and "flip" back; a new value for the session (no
    // expiry); the other key deleted.
    for _ in 0..2 {
        assert!(matches!(
            right.cmd(&["INCRBY", hits, "7"]),
            Reply::Integer(_)
        ));
    }
    let r = right.cmd(&["HSET", user, "right", "R", "shared", "from-right"]);
    assert!(matches!(r, Reply::Integer(1 | 2)), "{r:?}");
    assert!(matches!(
        right.cmd(&["HINCRBY", user, "views", "6"]),
        Reply::Integer(_)
    ));
    let r = right.cmd(&["SADD", tags, "right", "both", "flip"]);
    assert!(matches!(r, Reply::Integer(1..=3)), "{r:?}");
    assert_eq!(right.cmd(&["SET", session, "s2"]), Reply::ok());
    assert_eq!(right.cmd(&["SET", reset, "100"]), Reply::ok());
    // Left again, after the right's SET it has not seen: this increment
    // counts on top of the SET, the one before it does not.
    assert_eq!(left.cmd(&["INCRBY", reset, "1"]), Reply::Integer(16));
    assert!(matches!(right.cmd(&["DEL", gone]), Reply::Integer(0 | 1)));

    heal(&c);
    let keys = [hits, reset, user, tags, session, gone];
    assert!(
        wait_until(Duration::from_secs(10), || check_everywhere(&c, &k)),
        "every node answers the merge of both sides"
    );
    assert!(
        wait_until(Duration::from_secs(10), || converged(&c, &keys)),
        "every replica holds the same state"
    );

    // kill -9 one replica of the hash, then restart it: it comes back
    // with the same state (its log), and everything still reads the same.
    let victim = c.index(&strings(&c.client(0).cmd(&["RINGKV", "PREFLIST", user]))[0]);
    c.kill(victim);
    c.spawn(victim);
    assert!(
        wait_until(Duration::from_secs(10), || check_everywhere(&c, &k)
            && converged(&c, &keys)),
        "a replica restarted after kill -9 holds the merged state"
    );
}

/// One client's random operations on keys of every type, each recorded
/// with its interval and outcome, until `stop`.
fn random_client(
    mut cl: Client,
    seed: u64,
    t0: Instant,
    stop: &AtomicBool,
    history: &Mutex<History>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let b = |s: String| Bytes::from(s);
    while !stop.load(Ordering::Relaxed) {
        let n = rng.gen_range(0..3);
        let e = format!("e{}", rng.gen_range(0..4));
        let v = format!("{seed}-{}", rng.gen_range(0..1_000_000));
        let by: i64 = rng.gen_range(-3..10);
        let (args, op): (Vec<String>, Op) = match rng.gen_range(0..10) {
            0 => {
                let k = format!("k{n}");
                (
                    vec!["SET".into(), k.clone(), v.clone()],
                    Op::Set(b(k), b(v)),
                )
            }
            1 => {
                let k = format!("{}{n}", ["k", "h", "s"][rng.gen_range(0..3)]);
                (vec!["DEL".into(), k.clone()], Op::Del(b(k)))
            }
            2 | 3 => {
                let k = format!("c{n}");
                (
                    vec!["INCRBY".into(), k.clone(), by.to_string()],
                    Op::Incr(b(k), by),
                )
            }
            4 | 5 => {
                let k = format!("h{n}");
                let op = Op::HSet(b(k.clone()), b(e.clone()), b(v.clone()));
                (vec!["HSET".into(), k, e, v], op)
            }
            6 => {
                let k = format!("h{n}");
                (
                    vec!["HDEL".into(), k.clone(), e.clone()],
                    Op::HDel(b(k), b(e)),
                )
            }
            7 | 8 => {
                let k = format!("s{n}");
                (
                    vec!["SADD".into(), k.clone(), e.clone()],
                    Op::SAdd(b(k), b(e)),
                )
            }
            _ => {
                let k = format!("s{n}");
                (
                    vec!["SREM".into(), k.clone(), e.clone()],
                    Op::SRem(b(k), b(e)),
                )
            }
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = t0.elapsed().as_nanos() as u64;
        let reply = cl.cmd(&args);
        let end = t0.elapsed().as_nanos() as u64;
        let outcome = match reply {
            Reply::Error(e) if e.starts_with("UNAVAILABLE") => Outcome::Unknown,
            Reply::Error(e) => panic!("{args:?}: {e}"),
            _ => Outcome::Acked,
        };
        history.lock().unwrap().push(op, start, end, outcome);
    }
}

/// What node `i` reads of `key`, as the history checker sees it.
fn observe(c: &Cluster, i: usize, key: &str) -> Observed {
    common::observe(&c.nodes[i].client, key)
        .unwrap_or_else(|| panic!("{} did not answer a read of {key}", c.nodes[i].name))
}

/// Jepsen-style: four clients, two on each side of a 2|3 partition, make
/// random writes of every type before, during and after the partition.
/// After the heal every node reads the same, and the one history checker
/// finds nothing lost, resurrected or invented.
#[test]
fn random_writes_of_every_type_across_a_partition_pass_the_history_checker() {
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let c = Cluster::start(
        &names,
        &["--fault-injection", "--set", "anti_entropy_interval_ms=500"],
    );
    let history = Mutex::new(History::new());
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (t, node) in [0, 1, 2, 4].into_iter().enumerate() {
            let cl = c.client(node);
            let (stop, history) = (&stop, &history);
            s.spawn(move || random_client(cl, t as u64 + 1, t0, stop, history));
        }
        let ran = |n: usize| {
            wait_until(Duration::from_secs(10), || {
                history.lock().unwrap().len() >= n
            })
        };
        assert!(ran(200), "the clients did not get going");
        split(&c, &["n1", "n2"]);
        let before = history.lock().unwrap().len();
        assert!(ran(before + 400), "too few writes during the partition");
        heal(&c);
        let before = history.lock().unwrap().len();
        assert!(ran(before + 200), "too few writes after the heal");
        stop.store(true, Ordering::Relaxed);
    });
    let history = history.into_inner().unwrap();
    let keys: Vec<String> = history
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        wait_until(Duration::from_secs(15), || keys.iter().all(|k| {
            let first = observe(&c, 0, k);
            (1..names.len()).all(|i| observe(&c, i, k) == first)
        })),
        "the nodes never agreed"
    );
    let violations = history.check(|k| observe(&c, 0, &String::from_utf8_lossy(k)));
    assert!(violations.is_empty(), "{violations:#?}");
    eprintln!(
        "{} operations on {} keys checked",
        history.len(),
        keys.len()
    );
}

/// A node stopped with SIGTERM first tells its peers it takes no more
/// writes and finishes what it has in flight (`node/drain.rs`), so the
/// increments of the keys whose first replica it was move to the next
/// replica without one failing, and every acknowledged increment counts
/// exactly once. Restarted, it takes writes again at once.
#[test]
fn a_node_stopped_with_sigterm_hands_its_increments_over_without_a_failure() {
    const KEYS: usize = 12;
    let mut c = Cluster::start(&["n1", "n2", "n3"], &[]);
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(vec![0u64; KEYS]);
    let failures = Mutex::new(Vec::new());
    let victim = c.index("n2");
    std::thread::scope(|s| {
        for i in [c.index("n1"), c.index("n3")] {
            let mut client = c.client(i);
            let (stop, acked, failures) = (&stop, &acked, &failures);
            s.spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let k = n % KEYS;
                    match client.cmd(&["INCRBY", &format!("count{k}"), "1"]) {
                        Reply::Integer(_) => acked.lock().unwrap()[k] += 1,
                        other => failures.lock().unwrap().push(format!("via {i}: {other:?}")),
                    }
                    n += 1;
                }
            });
        }
        let total = || acked.lock().unwrap().iter().sum::<u64>();
        assert!(wait_until(Duration::from_secs(10), || total() > 300));
        let asked = Instant::now();
        let status = c.stop(victim, Duration::from_secs(20)).expect("running");
        let stopped_in = asked.elapsed();
        assert!(status.success(), "n2 exited with {status}");
        let mark = total();
        assert!(wait_until(Duration::from_secs(10), || total() > mark + 300));
        stop.store(true, Ordering::Relaxed);
        eprintln!(
            "drain: n2 stopped {stopped_in:?} after SIGTERM; {} increments",
            total()
        );
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(c
        .log(victim)
        .contains("drained: peers route writes around this node"));
    let acked = acked.into_inner().unwrap();
    for (k, n) in acked.iter().enumerate() {
        let key = format!("count{k}");
        assert_eq!(
            c.client(0).cmd(&["GET", &key]),
            bulk(&n.to_string()),
            "{key}"
        );
    }
    c.spawn(victim);
    for i in [c.index("n1"), c.index("n3")] {
        assert!(
            wait_until(Duration::from_secs(10), || c.state_of(i, "n2")
                == Some(ringkv::membership::State::Up)
                && c.write_fence(i, "n2") == Some(None)),
            "node {i} does not see n2 up and taking writes"
        );
    }
}

/// Hashes and sets large enough to find their elements through a table
/// (past 16 elements: `values/elems.rs`), rewritten to longer and shorter
/// values and thinned out by deletes until their arenas compact, answer
/// as Redis answers the same commands, through every node, and again
/// after every node was killed with -9 and started on its commit log.
#[test]
fn large_hashes_and_sets_answer_as_redis_after_rewrites_deletes_and_kill_9() {
    const N: usize = 300;
    let redis = common::redis_server::RedisServer::start();
    let mut c = Cluster::start(&["n1", "n2", "n3"], &[]);
    let mut reference = Client::connect(&redis.addr);
    let mut clients: Vec<Client> = (0..3).map(|i| c.client(i)).collect();
    let mut n = 0;
    let mut both = |args: &[&str]| {
        let want = reference.cmd(args);
        let got = clients[n % 3].cmd(args);
        assert_eq!(got, want, "{args:?} through node {}", n % 3);
        n += 1;
    };
    for i in 0..N {
        both(&["HSET", "big-h", &format!("f{i}"), &"v".repeat(i % 7 + 1)]);
        both(&["SADD", "big-s", &format!("m{i}")]);
    }
    for round in 0..3 {
        for i in (0..N).step_by(round + 2) {
            let value = "w".repeat((i + round) % 13);
            both(&["HSET", "big-h", &format!("f{i}"), &value]);
        }
    }
    for i in (0..N).filter(|i| i % 3 != 0) {
        both(&["HDEL", "big-h", &format!("f{i}")]);
        both(&["SREM", "big-s", &format!("m{i}")]);
    }
    for i in (0..N).step_by(9) {
        both(&["SADD", "big-s", &format!("m{i}"), &format!("again{i}")]);
    }
    let mut check = |c: &Cluster, when: &str| {
        let want_h = pairs(&reference.cmd(&["HGETALL", "big-h"]));
        let want_s = sorted(&reference.cmd(&["SMEMBERS", "big-s"]));
        assert_eq!(want_h.len(), N / 3, "the reference itself");
        for i in 0..3 {
            let mut node = c.client(i);
            assert_eq!(
                pairs(&node.cmd(&["HGETALL", "big-h"])),
                want_h,
                "{when}, node {i}"
            );
            assert_eq!(
                sorted(&node.cmd(&["SMEMBERS", "big-s"])),
                want_s,
                "{when}, node {i}"
            );
            for args in [
                ["HLEN", "big-h", ""],
                ["SCARD", "big-s", ""],
                ["HGET", "big-h", "f3"],
                ["HGET", "big-h", "f4"],
                ["HSTRLEN", "big-h", "f6"],
                ["SISMEMBER", "big-s", "m9"],
                ["SISMEMBER", "big-s", "m10"],
            ] {
                let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
                assert_eq!(
                    node.cmd(&args),
                    reference.cmd(&args),
                    "{when}, node {i}: {args:?}"
                );
            }
        }
    };
    check(&c, "written");
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        assert!(
            wait_until(Duration::from_secs(10), || c.up_count(i) == Some(3)),
            "node {i} did not see the others up again"
        );
    }
    check(&c, "after kill -9 of every node");
}
