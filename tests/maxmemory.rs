//! `maxmemory`: past it, commands that may add data are refused with
//! Redis's `-OOM` (deletes and reads go on), expired keys are reclaimed
//! first, and the other nodes write around the node.

mod common;

use std::time::Duration;

use common::*;
use ringkv::resp::codec::Reply;

const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Whether node `i` sees `name` fenced for being past `maxmemory`.
fn past_limit(c: &Cluster, i: usize, name: &str) -> bool {
    c.write_fence(i, name)
        .flatten()
        .is_some_and(|why| why.starts_with("OOM"))
}

/// Sets 1 KiB values under `prefix` until the node refuses; returns how
/// many it acknowledged and the refusal.
fn fill(client: &mut Client, prefix: &str, extra: &[&str]) -> (usize, Reply) {
    let value = "v".repeat(1024);
    for n in 0..100_000 {
        let key = format!("{prefix}{n}");
        let mut args = vec!["SET", key.as_str(), value.as_str()];
        args.extend_from_slice(extra);
        let reply = client.cmd(&args);
        if reply != Reply::ok() {
            return (n, reply);
        }
    }
    panic!("100 MB taken under a 256 KB maxmemory");
}

/// One node with a 256 KB limit: writes until the limit are acknowledged,
/// then SET, INCR, HSET and a queued SET get Redis's OOM error, reads,
/// DEL and EXPIRE go on, and deleting makes room again.
#[test]
fn past_maxmemory_writes_get_oom_and_reads_and_deletes_go_on() {
    let c = Cluster::start(&["m1"], &["--set", "maxmemory=262144"]);
    let mut client = c.client(0);
    let (acked, refusal) = fill(&mut client, "k", &[]);
    assert_eq!(refusal, Reply::Error(OOM.into()));
    assert!(acked > 100, "only {acked} KiB before the limit");
    for args in [
        &["INCR", "n"][..],
        &["HSET", "h", "f", "v"],
        &["SADD", "s", "m"],
    ] {
        assert_eq!(client.cmd(args), Reply::Error(OOM.into()), "{args:?}");
    }
    // Inside MULTI the refusal comes at once, for reads too (queuing takes
    // memory), and EXEC aborts, as in Redis.
    assert_eq!(client.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(client.cmd(&["SET", "x", "y"]), Reply::Error(OOM.into()));
    assert_eq!(client.cmd(&["GET", "k0"]), Reply::Error(OOM.into()));
    let exec = client.cmd(&["EXEC"]);
    assert!(
        matches!(&exec, Reply::Error(e) if e.starts_with("EXECABORT")),
        "{exec:?}"
    );
    // Once the node's own heartbeat has noted it is past the limit, it
    // counts as write-fenced; reads and DEL (not `denyoom` in Redis) go on.
    assert!(
        wait_until(Duration::from_secs(5), || past_limit(&c, 0, "m1")),
        "the node never saw itself past maxmemory"
    );
    assert_eq!(client.cmd(&["GET", "k0"]), bulk(&"v".repeat(1024)));
    let info = client.cmd(&["INFO", "memory"]);
    assert!(format!("{info:?}").contains("maxmemory:262144"), "{info:?}");
    // EXPIRE (a delta with no elements) goes on too, as in Redis.
    assert_eq!(client.cmd(&["EXPIRE", "k1", "100"]), Reply::Integer(1));
    // Deleting half of it makes room.
    for n in 0..acked / 2 {
        assert_eq!(client.cmd(&["DEL", &format!("k{n}")]), Reply::Integer(1));
    }
    assert!(
        c.ok_within(0, &["SET", "room", "again"], Duration::from_secs(5)),
        "no room after deleting half"
    );
}

/// Keys that have expired are reclaimed to make room: a node past the
/// limit with only expired keys takes writes again once they are
/// reclaimable (at once when a write finds it over, and once a second).
#[test]
fn expired_keys_are_reclaimed_to_make_room() {
    // A 1 s clock tolerance, so expired keys are reclaimable a second
    // after their deadline.
    let c = Cluster::start(
        &["m1"],
        &[
            "--set",
            "maxmemory=262144",
            "--set",
            "max_clock_skew_ms=1000",
            "--set",
            "clock_warn_ms=500",
        ],
    );
    let mut client = c.client(0);
    let (acked, refusal) = fill(&mut client, "e", &["PX", "100"]);
    assert_eq!(refusal, Reply::Error(OOM.into()));
    assert!(acked > 100);
    // Once they are reclaimable, a write is taken: the reclaim made room.
    assert!(
        c.ok_within(0, &["SET", "kept", "x"], Duration::from_secs(10)),
        "expired keys were not reclaimed to make room"
    );
}

/// Three nodes, one with a tiny limit: it announces it takes no writes,
/// and the others write around it at W = 2.
#[test]
fn a_node_past_maxmemory_is_written_around() {
    let mut c = Cluster::start(&["a1", "a2"], &[]);
    let small = c.add("a3", &["--set", "maxmemory=65536"]);
    for i in 0..3 {
        assert!(wait_until(Duration::from_secs(10), || c.up_count(i) == Some(3)));
    }
    // Fill a3 through itself until it refuses.
    let (_, refusal) = fill(&mut c.client(small), "f", &[]);
    assert_eq!(refusal, Reply::Error(OOM.into()));
    for i in 0..2 {
        assert!(
            wait_until(Duration::from_secs(5), || past_limit(&c, i, "a3")),
            "{} does not see a3 past maxmemory",
            c.nodes[i].name
        );
    }
    for n in 0..20 {
        let key = format!("w{n}");
        assert_eq!(
            c.client(n % 2).cmd(&["SET", &key, "v"]),
            Reply::ok(),
            "{key}"
        );
    }
}
