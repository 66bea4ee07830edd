//! Strict quorums through real processes: in a 2|3 partition, strict
//! reads never return a value older than an acknowledged write (they fail
//! instead), while sloppy reads do; strict writes fail where too few home
//! replicas are reachable, naming how many.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use ringkv::membership::State;
use ringkv::resp::codec::Reply;

const NAMES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];
const MINORITY: [&str; 2] = ["n1", "n2"];

/// What one pass of the partition workload saw.
#[derive(Debug, Default)]
struct Seen {
    acked_writes: usize,
    failed_writes: usize,
    reads: usize,
    failed_reads: usize,
    /// Reads that returned a value older than an acknowledged write.
    stale: Vec<String>,
    /// Error texts of the failures (one of each).
    errors: Vec<String>,
}

/// Splits the cluster 2|3 and waits until every node sees the other side
/// down, so requests fail or succeed without waiting for timeouts.
fn partition(c: &Cluster) {
    split(c, &MINORITY);
    for (i, node) in c.nodes.iter().enumerate() {
        let mine = MINORITY.contains(&node.name.as_str());
        for other in NAMES {
            if MINORITY.contains(&other) != mine {
                assert!(
                    wait_until(Duration::from_secs(5), || c.state_of(i, other)
                        == Some(State::Down)),
                    "{} still sees {other} up",
                    node.name
                );
            }
        }
    }
}

/// Waits until every node sees all five up again.
fn healed(c: &Cluster) {
    heal(c);
    for i in 0..c.nodes.len() {
        assert!(wait_until(Duration::from_secs(10), || c.up_count(i) == Some(5)));
    }
}

/// Each key is written through one side and read through the other, in
/// turn, with rising values; a read after an acknowledged write must see
/// that value or a higher one.
fn workload(c: &Cluster, mode: &str, keys: &[String]) -> Seen {
    let mut clients: Vec<Client> = (0..5).map(|i| c.client(i)).collect();
    for cl in &mut clients {
        assert_eq!(cl.cmd(&["RINGKV", "QUORUM", "2", "2", mode]), Reply::ok());
    }
    let mut seen = Seen::default();
    let mut acked: HashMap<&str, u64> = HashMap::new();
    let mut next = 1u64;
    let note = |seen: &mut Seen, e: String| {
        if !seen.errors.contains(&e) {
            seen.errors.push(e);
        }
    };
    for round in 0..6 {
        for (k, key) in keys.iter().enumerate() {
            // Writes go through each side in turn; reads through the other.
            let (writer, reader) = match (round + k) % 2 {
                0 => (2 + (k % 3), k % 2),
                _ => (k % 2, 2 + (k % 3)),
            };
            let value = next.to_string();
            next += 1;
            match clients[writer].cmd(&["SET", key, &value]) {
                r if r == Reply::ok() => {
                    seen.acked_writes += 1;
                    acked.insert(key, value.parse().unwrap());
                }
                Reply::Error(e) => {
                    seen.failed_writes += 1;
                    note(&mut seen, e);
                }
                other => panic!("SET answered {other:?}"),
            }
            seen.reads += 1;
            let floor = acked.get(key.as_str()).copied().unwrap_or(0);
            match clients[reader].cmd(&["GET", key]) {
                Reply::Error(e) => {
                    seen.failed_reads += 1;
                    note(&mut seen, e);
                }
                reply => {
                    let got: u64 = match &reply {
                        Reply::Nil => 0,
                        Reply::Bulk(b) => std::str::from_utf8(b).unwrap().parse().unwrap(),
                        other => panic!("GET answered {other:?}"),
                    };
                    if got < floor {
                        seen.stale.push(format!(
                            "{key} through {}: {got}, after {floor} was acknowledged",
                            c.nodes[reader].name
                        ));
                    }
                }
            }
        }
    }
    seen
}

#[test]
fn strict_reads_never_go_back_in_a_partition_and_sloppy_reads_do() {
    let c = Cluster::start(&NAMES, &["--fault-injection"]);
    // Keys whose home replicas lie both ways: all on the majority side,
    // two there and one on the minority, one there and two on the minority.
    let keys: Vec<String> = (0..3)
        .map(|minority| {
            (0..10_000)
                .map(|i| format!("k{minority}-{i}"))
                .find(|k| {
                    let home = strings(&c.client(0).cmd(&["RINGKV", "PREFLIST", k]));
                    home.iter()
                        .filter(|n| MINORITY.contains(&n.as_str()))
                        .count()
                        == minority
                })
                .unwrap()
        })
        .collect();

    partition(&c);
    let sloppy = workload(&c, "sloppy", &keys);
    healed(&c);
    // Sloppy quorums take every request on both sides, and some reads go
    // back in time: this is what the strict pass must never show.
    assert_eq!(sloppy.failed_writes, 0, "{sloppy:?}");
    assert!(!sloppy.stale.is_empty(), "{sloppy:?}");

    partition(&c);
    let strict = workload(&c, "strict", &keys);
    healed(&c);
    assert!(strict.stale.is_empty(), "{strict:?}");
    assert!(strict.acked_writes > 0 && strict.reads > strict.failed_reads);
    assert!(strict.failed_writes > 0 && strict.failed_reads > 0);
    // The minority side cannot write keys with fewer than two home
    // replicas there, and says how many of them it reaches.
    for e in &strict.errors {
        assert!(
            e.starts_with("UNAVAILABLE ")
                && e.contains("home replicas needed")
                && e.contains("strict quorums count no other node"),
            "{e}"
        );
    }
}

#[test]
fn a_strict_write_names_the_home_replicas_it_reached() {
    let c = Cluster::start(&NAMES, &["--fault-injection"]);
    let key = key_with_replicas_on(&c, "h", &["n3", "n4", "n5"], 3);
    let counter = key_with_replicas_on(&c, "c", &["n3", "n4", "n5"], 3);
    partition(&c);
    let mut minority = c.client(0);
    assert_eq!(
        minority.cmd(&["RINGKV", "QUORUM", "2", "2", "strict"]),
        Reply::ok()
    );
    assert_eq!(
        minority.cmd(&["RINGKV", "QUORUM"]),
        Reply::Array(vec![Reply::Integer(2), Reply::Integer(2), bulk("strict")])
    );
    assert_eq!(
        minority.cmd(&["SET", &key, "v"]),
        Reply::Error(
            "UNAVAILABLE write reached only 0 of the 2 home replicas needed; 0 of the key's 3 \
             home replicas are up (strict quorums count no other node)"
                .into()
        )
    );
    assert_eq!(
        minority.cmd(&["INCR", &key]),
        Reply::Error(
            "UNAVAILABLE write reached only 0 of the 2 home replicas needed; 0 of the key's 3 \
             home replicas are up (strict quorums count no other node)"
                .into()
        )
    );
    let Reply::Error(e) = minority.cmd(&["HGET", &key, "f"]) else {
        panic!("a strict read with no home replica up answered");
    };
    assert!(
        e.starts_with("UNAVAILABLE read reached only 0 of the 2 home"),
        "{e}"
    );
    // Sloppy, the same node takes it (the minority's two nodes stand in).
    assert_eq!(
        minority.cmd(&["RINGKV", "QUORUM", "2", "2", "sloppy"]),
        Reply::ok()
    );
    assert_eq!(minority.cmd(&["SET", &key, "v"]), Reply::ok());
    // Strict on the majority side: all three home replicas are there.
    let mut majority = c.client(2);
    assert_eq!(
        majority.cmd(&["RINGKV", "QUORUM", "2", "3", "strict"]),
        Reply::ok()
    );
    assert_eq!(majority.cmd(&["SET", &key, "w"]), Reply::ok());
    assert_eq!(majority.cmd(&["INCR", &counter]), Reply::Integer(1));
    assert_eq!(majority.cmd(&["GET", &key]), bulk("w"));
    assert_eq!(
        majority.cmd(&["RINGKV", "QUORUM", "0", "2", "strict"]),
        Reply::err(
            "RINGKV QUORUM R W [strict|sloppy] needs two integers between 1 and the replication factor 3"
        )
    );
    assert_eq!(
        majority.cmd(&["RINGKV", "QUORUM", "2", "2", "eventually"]),
        Reply::err(
            "RINGKV QUORUM R W [strict|sloppy] needs two integers between 1 and the replication factor 3"
        )
    );
}
