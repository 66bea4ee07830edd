//! The client commands that need a real cluster to mean anything:
//! FLUSHALL across a node that was down and across restarts, the
//! read-modify-write conflict counter, and CLIENT KILL.

mod common;
#[path = "support/prom.rs"]
mod prom;

use std::time::Duration;

use common::{bulk, http_get, http_post, strings, wait_until, Cluster};
use ringkv::membership::State;
use ringkv::resp::codec::Reply;

fn scrape(c: &Cluster, i: usize, name: &str) -> f64 {
    let text = http_get(&c.nodes[i].admin, "/metrics").expect("/metrics answers 200");
    let exposition = prom::parse(&text).unwrap_or_else(|e| panic!("/metrics: {e}"));
    exposition.value(name, &[])
}

/// Every node reads `key` as absent.
fn absent_everywhere(c: &Cluster, key: &str) -> bool {
    (0..c.nodes.len()).all(|i| c.client(i).cmd(&["GET", key]) == Reply::Nil)
}

/// A FLUSHALL while one node is down: the others answer OK once they have
/// the marker; the returning node learns it and shows nothing older, even
/// to a read it coordinates at once; a write after the flush survives; and
/// all of it holds after every node is killed and restarted.
#[test]
fn flushall_reaches_a_node_that_was_down_and_survives_restarts() {
    let mut c = Cluster::start(&["fa", "fb", "fc"], &[]);
    let mut a = c.client(0);
    for k in 0..40 {
        assert_eq!(a.cmd(&["SET", &format!("old{k}"), "v"]), Reply::ok());
    }
    c.kill(2);
    assert!(
        wait_until(Duration::from_secs(10), || {
            c.state_of(0, "fc") == Some(State::Down) && c.state_of(1, "fc") == Some(State::Down)
        }),
        "fc not seen down"
    );
    assert_eq!(a.cmd(&["FLUSHALL"]), Reply::ok());
    for i in 0..2 {
        assert_eq!(c.client(i).cmd(&["DBSIZE"]), Reply::Integer(0), "node {i}");
    }
    assert_eq!(c.client(1).cmd(&["SET", "after", "new"]), Reply::ok());

    c.spawn(2);
    // The first read through the returning node: it holds the old keys on
    // disk and had not heard of the flush.
    let mut back = c.client(2);
    for k in 0..40 {
        assert_eq!(back.cmd(&["GET", &format!("old{k}")]), Reply::Nil, "old{k}");
    }
    assert!(wait_until(Duration::from_secs(10), || c.up_count(2) == Some(3)));
    for k in 0..40 {
        assert!(absent_everywhere(&c, &format!("old{k}")), "old{k} readable");
    }
    for i in 0..3 {
        assert_eq!(c.client(i).cmd(&["GET", "after"]), bulk("new"), "node {i}");
        assert_eq!(
            strings(&c.client(i).cmd(&["KEYS", "*"])),
            vec!["after"],
            "node {i}"
        );
    }
    // The returning node drops its own copies, as its log is replayed
    // again on the next start: nothing is held locally either.
    assert!(
        wait_until(Duration::from_secs(10), || {
            (0..40).all(|k| {
                c.client(2).cmd(&["RINGKV", "LOCAL", &format!("old{k}")]) == Reply::NilArray
            })
        }),
        "fc still holds flushed entries"
    );

    // Every node killed and restarted: the marker is on every disk.
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        assert!(wait_until(Duration::from_secs(10), || c.up_count(i) == Some(3)));
    }
    for k in 0..40 {
        assert!(
            absent_everywhere(&c, &format!("old{k}")),
            "old{k} back after restart"
        );
    }
    for i in 0..3 {
        assert_eq!(c.client(i).cmd(&["GET", "after"]), bulk("new"), "node {i}");
        assert_eq!(c.client(i).cmd(&["DBSIZE"]), Reply::Integer(1), "node {i}");
    }
}

/// FLUSHALL needs every node it sees up to confirm: a node cut off (but
/// not yet marked down) makes it answer how many did, and learns of the
/// flush when the link heals.
#[test]
fn a_flushall_that_cannot_reach_a_node_says_so_and_the_node_learns_later() {
    let c = Cluster::start(
        &["pa", "pb", "pc"],
        &[
            "--fault-injection",
            "--set",
            "failure_timeout_ms=60000",
            "--set",
            "request_timeout_ms=500",
        ],
    );
    assert_eq!(c.client(2).cmd(&["SET", "k", "v"]), Reply::ok());
    // Every message from pa to pc is dropped (pc stays "up": the failure
    // timeout is a minute).
    let drop = r#"{"op":"drop","count":1000000,"direction":"outgoing","peer":"pc"}"#;
    assert!(http_post(&c.nodes[0].admin, "/fault", drop).is_some());
    let reply = c.client(0).cmd(&["FLUSHALL"]);
    assert_eq!(
        reply,
        Reply::Error(
            "UNAVAILABLE flushall reached 2 of the 3 nodes up before the deadline; \
             the others apply it when they are reached"
                .into()
        )
    );
    // pb applied it; pc learns it from pb's heartbeat digests.
    assert_eq!(c.client(1).cmd(&["RINGKV", "LOCAL", "k"]), Reply::NilArray);
    assert!(
        wait_until(Duration::from_secs(10), || c
            .client(2)
            .cmd(&["RINGKV", "LOCAL", "k"])
            == Reply::NilArray),
        "pc never learned of the flush"
    );
    assert!(absent_everywhere(&c, "k"));
}

/// A read-modify-write computed from a stale replica: the others report a
/// newer version, and the conflict is counted.
#[test]
fn a_read_modify_write_over_a_stale_read_is_counted_as_a_conflict() {
    let c = Cluster::start(
        &["ra", "rb", "rc"],
        &[
            "--fault-injection",
            "--set",
            "failure_timeout_ms=60000",
            "--set",
            "anti_entropy_interval_ms=600000",
        ],
    );
    let mut a = c.client(0);
    let mut b = c.client(1);
    assert_eq!(a.cmd(&["SET", "k", "one"]), Reply::ok());
    assert!(wait_until(Duration::from_secs(5), || {
        c.client(0).cmd(&["RINGKV", "LOCAL", "k"]) != Reply::NilArray
    }));
    // The rounds that the nodes' discovery of each other started must be
    // over, or one still running would carry "two" to ra after the cut.
    assert!(wait_until(Duration::from_secs(10), || (0..3).all(|i| {
        scrape(&c, i, "ringkv_view_epoch_reconciled") == scrape(&c, i, "ringkv_view_epoch")
    })));
    // ra is cut off while rb writes (it stays up: the failure timeout is a
    // minute, so no ring change and no anti-entropy round follows).
    let fault = |json: &str| {
        for n in &c.nodes {
            assert!(http_post(&n.admin, "/fault", json).is_some());
        }
    };
    fault(r#"{"op":"split","name":"cut","nodes":["ra"]}"#);
    assert_eq!(b.cmd(&["SET", "k", "two"]), Reply::ok());
    fault(r#"{"op":"join","name":"cut"}"#);
    let stale = c.client(0).cmd(&["RINGKV", "LOCAL", "k"]);
    assert!(
        matches!(&stale, Reply::Array(items) if items.first() == Some(&bulk("one"))),
        "{stale:?}"
    );
    let before = scrape(&c, 0, "ringkv_rmw_conflicts_total");
    // Read from ra alone (R = 1): it sees "one", the others hold "two".
    assert_eq!(a.cmd(&["RINGKV", "QUORUM", "1", "2"]), Reply::ok());
    assert_eq!(a.cmd(&["APPEND", "k", "!"]), Reply::Integer(4));
    assert_eq!(scrape(&c, 0, "ringkv_rmw_conflicts_total") - before, 1.0);
    // Last writer wins: the append, stamped after what it read, is newest.
    assert_eq!(b.cmd(&["GET", "k"]), bulk("one!"));
    // Without a conflict the counter stays put.
    assert_eq!(a.cmd(&["APPEND", "k", "?"]), Reply::Integer(5));
    assert_eq!(scrape(&c, 0, "ringkv_rmw_conflicts_total") - before, 1.0);
}

/// CLIENT KILL closes the connections it names (by id, by address) and
/// never the caller unless asked; CLIENT LIST no longer shows them.
#[test]
fn client_kill_closes_the_named_connections() {
    let c = Cluster::start(&["solo"], &[]);
    let mut admin = c.client(0);
    let mut victim = c.client(0);
    let mut other = c.client(0);
    let Reply::Integer(victim_id) = victim.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID")
    };
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "ID", &victim_id.to_string()]),
        Reply::Integer(1)
    );
    assert_eq!(victim.read(), None, "the killed connection is closed");
    let list = match admin.cmd(&["CLIENT", "LIST"]) {
        Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("CLIENT LIST answered {other:?}"),
    };
    assert!(!list.contains(&format!("id={victim_id} ")), "{list}");
    assert_eq!(list.lines().count(), 2, "{list}");
    // The old form names an address and answers OK or an error.
    let addr = list
        .lines()
        .find(|l| !l.contains("cmd=client"))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("addr=")))
        .expect("the other connection's address")
        .to_string();
    assert_eq!(admin.cmd(&["CLIENT", "KILL", &addr]), Reply::ok());
    assert_eq!(other.read(), None);
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", &addr]),
        Reply::err("No such client")
    );
    // SKIPME yes (the default) spares the caller.
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "TYPE", "normal"]),
        Reply::Integer(0)
    );
    assert_eq!(admin.cmd(&["PING"]), Reply::simple("PONG"));
}
