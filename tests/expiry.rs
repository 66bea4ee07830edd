//! Key expiry on a real cluster: an expired key is absent to every
//! command on every node at once, its memory is reclaimed without a
//! client touching it, and it stays dead: a replica that missed the
//! expiry does not bring the key back, across kill -9 and restarts.

mod common;

use std::time::Duration;

use common::{bulk, strings, wait_until, Cluster};
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
    assert!((0..2).all(|i| reclaimed(&c, i) >= 1.0));

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
