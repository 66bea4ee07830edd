//! Key expiry on a real cluster: an expired key is absent to every
//! command on every node at once, its memory is reclaimed without a
//! client touching it, and it stays dead: a replica that missed the
//! expiry does not bring the key back, across kill -9 and restarts.

mod common;

use std::time::Duration;

use common::{bulk, heal, key_with_replicas_on, split, strings, wait_until, Cluster};
use ringkv::membership::State;
use ringkv::resp::codec::Reply;

/// SCAN's keys over a whole iteration.
fn scan_all(c: &Cluster, i: usize) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    loop {
        let Reply::Array(parts) = c.client(i).cmd(&["SCAN", &cursor, "COUNT", "100"]) else {
            panic!("SCAN answered no array");
        };
        keys.extend(strings(&parts[1]));
        cursor = strings(&Reply::Array(vec![parts[0].clone()]))[0].clone();
        if cursor == "0" {
            keys.sort();
            return keys;
        }
    }
}

/// Asserts that every node answers as if `dead` did not exist and `live`
/// did (both strings holding "v").
fn absent_on_every_node(c: &Cluster, dead: &str, live: &str) {
    for i in 0..c.nodes.len() {
        let mut n = c.client(i);
        let on = format!("node {i}");
        assert_eq!(n.cmd(&["GET", dead]), Reply::Nil, "GET {on}");
        assert_eq!(
            n.cmd(&["EXISTS", dead, live]),
            Reply::Integer(1),
            "EXISTS {on}"
        );
        assert_eq!(
            n.cmd(&["MGET", dead, live]),
            Reply::Array(vec![Reply::Nil, bulk("v")]),
            "MGET {on}"
        );
        assert_eq!(n.cmd(&["TYPE", dead]), Reply::simple("none"), "TYPE {on}");
        assert_eq!(n.cmd(&["TTL", dead]), Reply::Integer(-2), "TTL {on}");
        assert_eq!(n.cmd(&["PTTL", dead]), Reply::Integer(-2), "PTTL {on}");
        assert_eq!(strings(&n.cmd(&["KEYS", "*"])), vec![live], "KEYS {on}");
        assert_eq!(scan_all(c, i), vec![live], "SCAN {on}");
        assert_eq!(n.cmd(&["DBSIZE"]), Reply::Integer(1), "DBSIZE {on}");
        // Held and expired (shown as nothing), or already reclaimed (a
        // tombstone): either way no value.
        let state = local_state(c, i, dead);
        assert!(
            state.is_none() || state.as_deref() == Some("tombstone"),
            "RINGKV LOCAL {on}: {state:?}"
        );
    }
}

/// A key whose deadline has passed reads as absent on every node at once,
/// to every command that looks at keys, before anything reclaimed it: one
/// set with a deadline already past, one that expires while the test
/// watches.
#[test]
fn an_expired_key_is_absent_to_every_command_on_every_node() {
    let c = Cluster::start(&["xa", "xb", "xc"], &[]);
    let mut a = c.client(0);
    assert_eq!(a.cmd(&["SET", "live", "v"]), Reply::ok());
    assert_eq!(a.cmd(&["SET", "past", "v", "PXAT", "1"]), Reply::ok());
    absent_on_every_node(&c, "past", "live");

    // Five seconds of margin: the key must still be there when first read.
    assert_eq!(a.cmd(&["DEL", "past"]), Reply::Integer(0));
    assert_eq!(a.cmd(&["SET", "soon", "v", "PX", "5000"]), Reply::ok());
    // INFO's keyspace counts the keys with a deadline each node holds.
    assert!(
        wait_until(Duration::from_secs(5), || (0..3).all(|i| {
            let info = strings(&Reply::Array(vec![c.client(i).cmd(&["INFO", "keyspace"])]));
            info[0].contains("db0:keys=2,expires=1,")
        })),
        "INFO keyspace: {:?}",
        c.client(0).cmd(&["INFO", "keyspace"])
    );
    for i in 0..3 {
        assert_eq!(c.client(i).cmd(&["GET", "soon"]), bulk("v"), "node {i}");
        let Reply::Integer(ttl) = c.client(i).cmd(&["PTTL", "soon"]) else {
            panic!("PTTL answered no integer");
        };
        assert!((1..=5000).contains(&ttl), "PTTL {ttl} on node {i}");
    }
    assert!(
        wait_until(Duration::from_secs(15), || {
            (0..3).all(|i| c.client(i).cmd(&["GET", "soon"]) == Reply::Nil)
        }),
        "the key never expired"
    );
    absent_on_every_node(&c, "soon", "live");
}

/// Nodes that reclaim quickly (a clock tolerance of 200 ms) and
/// reconcile often.
const FAST: &[&str] = &[
    "--set",
    "max_clock_skew_ms=200",
    "--set",
    "anti_entropy_interval_ms=300",
];

/// What node `i` holds of `key` itself: `RINGKV LOCAL`'s state field, or
/// `None` when it holds nothing it shows.
fn local_state(c: &Cluster, i: usize, key: &str) -> Option<String> {
    match c.client(i).cmd(&["RINGKV", "LOCAL", key]) {
        Reply::Array(f) => match &f[3] {
            Reply::Simple(s) => Some(s.to_string()),
            other => panic!("RINGKV LOCAL state {other:?}"),
        },
        _ => None,
    }
}

fn reclaimed(c: &Cluster, i: usize) -> f64 {
    let text = common::http_get(&c.nodes[i].admin, "/metrics").expect("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("ringkv_expired_reclaimed_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// An expired key is reduced to a tombstone on every replica without a
/// client touching it; a replica that was down when the expiry was set,
/// and still holds the key without one, does not bring it back when it
/// returns (read repair and anti-entropy carry the tombstone to it); and nothing comes
/// back after every node is killed and restarted.
#[test]
fn an_expired_key_is_reclaimed_and_stays_dead() {
    let mut c = Cluster::start(&["ya", "yb", "yc"], FAST);
    let mut a = c.client(0);
    assert_eq!(a.cmd(&["SET", "k", "v"]), Reply::ok());
    assert!(
        wait_until(Duration::from_secs(10), || {
            (0..3).all(|i| local_state(&c, i, "k").as_deref() == Some("live"))
        }),
        "the write did not reach every replica"
    );
    c.kill(2);
    assert!(
        wait_until(Duration::from_secs(10), || c.state_of(0, "yc")
            == Some(State::Down)),
        "yc not seen down"
    );
    assert_eq!(a.cmd(&["PEXPIRE", "k", "300"]), Reply::Integer(1));
    assert!(
        wait_until(Duration::from_secs(15), || {
            (0..2).all(|i| local_state(&c, i, "k").as_deref() == Some("tombstone"))
        }),
        "the expired key was not reclaimed"
    );
    // At least one node reclaimed it itself; the other may have had its
    // tombstone from it (anti-entropy runs every 300 ms here, the reclaim
    // loop once a second) before its own loop came to the key.
    assert!((0..2).map(|i| reclaimed(&c, i)).sum::<f64>() >= 1.0);

    // yc comes back holding k without an expiry.
    c.spawn(2);
    assert_eq!(c.client(2).cmd(&["GET", "k"]), Reply::Nil);
    assert!(
        wait_until(Duration::from_secs(15), || local_state(&c, 2, "k")
            .as_deref()
            == Some("tombstone")),
        "neither read repair nor anti-entropy carried the tombstone to yc"
    );
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        assert_eq!(c.client(i).cmd(&["GET", "k"]), Reply::Nil, "node {i}");
        assert_eq!(c.client(i).cmd(&["EXISTS", "k"]), Reply::Integer(0));
    }
}

/// Expiry across a 2|3 partition, a heal and a kill -9:
///
/// - a key set with PX 1500 on one side reads as absent on every node
///   once 1.5 s have passed (all nodes here share one clock, so the clock
///   tolerance is nil), during the partition, after the heal, and after a
///   replica is killed with -9 and restarted;
/// - a key whose expiry one side set while the other side later removed
///   it with PERSIST lives on after the heal (the later change of the
///   deadline wins), although it expired on the first side meanwhile;
/// - in the other order (PERSIST first, the expiring SET later) the key
///   expires everywhere.
///
/// PERSIST reads the key, so it is sent on the side holding two of the
/// key's replicas; the expiring writes are plain SETs, exact on any side.
#[test]
fn expiry_holds_across_a_partition_a_heal_and_a_kill() {
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let mut c = Cluster::start(
        &names,
        &["--fault-injection", "--set", "anti_entropy_interval_ms=500"],
    );
    let right = ["n3", "n4", "n5"];
    let short = key_with_replicas_on(&c, "short", &names, 3);
    let kept = key_with_replicas_on(&c, "kept", &right, 2);
    let dies = key_with_replicas_on(&c, "dies", &right, 2);
    let mut l = c.client(c.index("n1"));
    let mut r = c.client(c.index("n4"));
    for k in [&kept, &dies] {
        assert_eq!(l.cmd(&["SET", k, "v0", "PX", "600000"]), Reply::ok());
    }
    split(&c, &["n1", "n2"]);

    // kept: the left's expiring SET, then the right's PERSIST.
    assert_eq!(l.cmd(&["SET", &kept, "v1", "PX", "1500"]), Reply::ok());
    assert_eq!(r.cmd(&["PERSIST", &kept]), Reply::Integer(1));
    // dies: the right's PERSIST, then the left's expiring SET.
    assert_eq!(r.cmd(&["PERSIST", &dies]), Reply::Integer(1));
    assert_eq!(l.cmd(&["SET", &dies, "v1", "PX", "1500"]), Reply::ok());
    // short: set on the left, readable there at first.
    assert_eq!(l.cmd(&["SET", &short, "v", "PX", "1500"]), Reply::ok());
    assert_eq!(l.cmd(&["GET", &short]), bulk("v"));

    let absent_everywhere = |c: &Cluster, key: &str| {
        (0..c.nodes.len()).all(|i| {
            let mut n = c.client(i);
            n.cmd(&["GET", key]) == Reply::Nil
                && n.cmd(&["EXISTS", key]) == Reply::Integer(0)
                && n.cmd(&["PTTL", key]) == Reply::Integer(-2)
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), || absent_everywhere(&c, &short)),
        "during the partition"
    );
    // On the left, kept expired too: it has not heard of the PERSIST.
    assert_eq!(l.cmd(&["GET", &kept]), Reply::Nil);

    heal(&c);
    let settled = |c: &Cluster| {
        absent_everywhere(c, &short)
            && absent_everywhere(c, &dies)
            && (0..c.nodes.len()).all(|i| {
                let mut n = c.client(i);
                n.cmd(&["GET", &kept]) == bulk("v1")
                    && n.cmd(&["PTTL", &kept]) == Reply::Integer(-1)
            })
    };
    assert!(
        wait_until(Duration::from_secs(10), || settled(&c)),
        "after the heal: short and dies absent, kept alive without expiry"
    );

    let victim = c.index(&strings(&c.client(0).cmd(&["RINGKV", "PREFLIST", &short]))[0]);
    c.kill(victim);
    c.spawn(victim);
    assert!(
        wait_until(Duration::from_secs(10), || settled(&c)),
        "after kill -9 and restart of a replica"
    );
}
