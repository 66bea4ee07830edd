//! Convergence through real processes: periodic anti-entropy, read repair,
//! and a healed 2|3 partition with conflicting writes and deletes.

mod common;

use std::time::Duration;

use common::*;
use ringkv::membership::State;
use ringkv::resp::codec::Reply;

fn local(c: &Cluster, i: usize, key: &str) -> Reply {
    match c.client(i).cmd(&["RINGKV", "LOCAL", key]) {
        Reply::Array(items) => items[0].clone(),
        other => other,
    }
}

/// Nodes a, b, c with fault injection and slow failure detection, so a
/// short drop window changes no view, and the given anti-entropy period.
fn three_nodes_that_never_mark_each_other_down(anti_entropy_ms: u64) -> Cluster {
    let period = format!("anti_entropy_interval_ms={anti_entropy_ms}");
    Cluster::start(
        &["a", "b", "c"],
        &[
            "--fault-injection",
            "--set",
            "failure_timeout_ms=5000",
            "--set",
            &period,
        ],
    )
}

#[test]
fn a_replica_that_missed_writes_catches_up_within_one_periodic_round() {
    // Only the periodic round (every ~1 s) can repair here.
    let c = three_nodes_that_never_mark_each_other_down(1000);
    fault(
        &c,
        2,
        r#"{"op":"drop","count":1000000000,"direction":"incoming","peer":null}"#,
    );
    let mut client = c.client(0);
    for k in 0..100 {
        assert_eq!(client.cmd(&["SET", &format!("k{k}"), "v"]), Reply::ok());
    }
    assert_eq!(local(&c, 2, "k1"), Reply::NilArray, "c missed the writes");
    fault(&c, 2, r#"{"op":"clear"}"#);
    // One periodic round is at most 1.2 s away; no read touches the keys.
    assert!(
        wait_until(Duration::from_millis(3000), || (0..100).all(|k| local(
            &c,
            2,
            &format!("k{k}")
        ) == bulk(
            "v"
        ))),
        "c holds every write after one round"
    );
    assert!(
        (0..3).all(|i| c.up_count(i) == Some(3)),
        "no node was ever marked down"
    );
    // The repair is visible in /status and /metrics of the nodes involved.
    let sent: u64 = (0..2)
        .map(|i| {
            c.status(i)
                .unwrap()
                .anti_entropy
                .get("c")
                .map_or(0, |s| s.keys_sent)
        })
        .sum();
    assert!(
        sent >= 100,
        "a and b report the entries they sent to c ({sent})"
    );
    // a's own periodic round with c (at most 1.2 s away) ends in agreement.
    let agreed = |c: &Cluster| {
        c.status(0)
            .and_then(|s| s.anti_entropy.get("c").cloned())
            .and_then(|s| s.last_agreement_unix_ms)
    };
    let since = ringkv::clock::wall_micros() / 1000;
    assert!(
        wait_until(Duration::from_secs(3), || agreed(&c)
            .is_some_and(|t| t >= since)),
        "a reports when it last agreed with c"
    );
    let metrics = http_get(&c.nodes[0].admin, "/metrics").unwrap();
    assert!(
        metrics.contains("ringkv_anti_entropy_rounds_total{peer=\"c\"}"),
        "{metrics}"
    );
}

#[test]
fn a_read_that_finds_a_stale_replica_repairs_it() {
    // Periodic rounds far away: only the read can repair.
    let c = three_nodes_that_never_mark_each_other_down(600_000);
    let mut client = c.client(0);
    assert_eq!(client.cmd(&["SET", "k", "old"]), Reply::ok());
    assert!(wait_until(Duration::from_secs(2), || local(&c, 2, "k") == bulk("old")));
    // Make c stale: it drops what arrives while "new" is written. The Put
    // to c travels on its own link and may still be in flight when the
    // fault is cleared; then c is not stale and the setup is tried again.
    let mut newest = None;
    for attempt in 0..5 {
        fault(
            &c,
            2,
            r#"{"op":"drop","count":1000000000,"direction":"incoming","peer":null}"#,
        );
        let value = format!("new{attempt}");
        assert_eq!(client.cmd(&["SET", "k", &value]), Reply::ok());
        fault(&c, 2, r#"{"op":"clear"}"#);
        if local(&c, 2, "k") != bulk(&value) {
            newest = Some(value);
            break;
        }
    }
    let newest = newest.expect("c missed one of five writes");
    // Read with R = 3 so c's stale answer is among those compared.
    assert_eq!(client.cmd(&["RINGKV", "QUORUM", "3", "2"]), Reply::ok());
    assert_eq!(client.cmd(&["GET", "k"]), bulk(&newest));
    assert!(
        wait_until(Duration::from_secs(2), || local(&c, 2, "k")
            == bulk(&newest)),
        "read repair fixed c"
    );
}

#[test]
fn a_healed_partition_with_conflicting_writes_and_deletes_converges_everywhere() {
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let c = Cluster::start(&names, &["--fault-injection"]);
    let mut left = c.client(0);
    let mut right = c.client(3);
    for k in 0..10 {
        assert_eq!(left.cmd(&["SET", &format!("w{k}"), "base"]), Reply::ok());
        assert_eq!(left.cmd(&["SET", &format!("d{k}"), "base"]), Reply::ok());
    }
    for i in 0..5 {
        fault(&c, i, r#"{"op":"split","name":"p","nodes":["n1","n2"]}"#);
    }
    assert!(wait_until(Duration::from_secs(5), || c.state_of(0, "n3")
        == Some(State::Down)
        && c.state_of(3, "n1") == Some(State::Down)));
    // Left first, right later: for w*, right's write wins. For d0..d4 the
    // left deletes and nobody writes again: deleted. For d5..d9 the right
    // writes, then the left deletes later: deleted. For x*, the right
    // deletes, then the left writes later: the write wins.
    for k in 0..10 {
        assert_eq!(left.cmd(&["SET", &format!("w{k}"), "left"]), Reply::ok());
        assert_eq!(right.cmd(&["SET", &format!("x{k}"), "base"]), Reply::ok());
    }
    for k in 0..5 {
        assert!(matches!(
            left.cmd(&["DEL", &format!("d{k}")]),
            Reply::Integer(_)
        ));
    }
    for k in 0..10 {
        assert_eq!(right.cmd(&["SET", &format!("w{k}"), "right"]), Reply::ok());
        assert!(matches!(
            right.cmd(&["DEL", &format!("x{k}")]),
            Reply::Integer(_)
        ));
    }
    for k in 5..10 {
        assert_eq!(right.cmd(&["SET", &format!("d{k}"), "right"]), Reply::ok());
        assert!(matches!(
            left.cmd(&["DEL", &format!("d{k}")]),
            Reply::Integer(_)
        ));
    }
    for k in 0..10 {
        assert_eq!(left.cmd(&["SET", &format!("x{k}"), "left"]), Reply::ok());
    }
    for i in 0..5 {
        fault(&c, i, r#"{"op":"join","name":"p"}"#);
    }
    let expected = |key: &str| -> Reply {
        match key.as_bytes()[0] {
            b'w' => bulk("right"),
            b'x' => bulk("left"),
            _ => Reply::Nil,
        }
    };
    let keys: Vec<String> = (0..10)
        .flat_map(|k| [format!("w{k}"), format!("d{k}"), format!("x{k}")])
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || (0..5).all(|i| {
            let mut client = c.client(i);
            keys.iter().all(|k| client.cmd(&["GET", k]) == expected(k))
        })),
        "every key read through every node settles on the later write, deletes included"
    );
}

/// Bytes of anti-entropy messages every node reports having sent.
fn ae_bytes_sent(c: &Cluster) -> u64 {
    (0..3)
        .filter_map(|i| c.status(i))
        .flat_map(|s| s.anti_entropy.into_values())
        .map(|p| p.bytes_sent)
        .sum()
}

/// Bytes of anti-entropy it takes to repair one field that replica c
/// missed in a hash of 5,000 fields of 32 bytes (about 300 KB on each
/// node), with the given sections threshold, and c speaking at most
/// protocol `c_protocol`.
fn repair_one_field_of_a_large_hash(sections_min_bytes: &str, c_protocol: u32) -> u64 {
    let flags = [
        "--fault-injection",
        "--set",
        "failure_timeout_ms=5000",
        "--set",
        "anti_entropy_interval_ms=1000",
        "--set",
        &format!("anti_entropy_sections_min_bytes={sections_min_bytes}"),
    ];
    let mut c = Cluster::start(&["a", "b"], &flags);
    let cap = format!("peer_protocol_max={c_protocol}");
    let third = c.add("c", &[&flags[..], &["--set", &cap]].concat());
    assert_eq!(third, 2);
    assert!(wait_until(Duration::from_secs(20), || (0..3)
        .all(|i| c.up_count(i) == Some(3))));
    let mut client = c.client(0);
    let value = "v".repeat(32);
    for chunk in 0..50 {
        let mut cmd = vec!["HSET".to_string(), "big".to_string()];
        for i in 0..100 {
            cmd.extend([format!("field:{}", chunk * 100 + i), value.clone()]);
        }
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        assert_eq!(client.cmd(&args), Reply::Integer(100));
    }
    let agree = |c: &Cluster| {
        let first = c.client(0).cmd(&["RINGKV", "LOCAL", "big"]);
        (1..3).all(|i| c.client(i).cmd(&["RINGKV", "LOCAL", "big"]) == first)
    };
    assert!(
        wait_until(Duration::from_secs(5), || agree(&c)),
        "every node holds the hash"
    );
    // c misses one HSET, then anti-entropy repairs it.
    fault(
        &c,
        2,
        r#"{"op":"drop","count":1000000000,"direction":"incoming","peer":null}"#,
    );
    assert_eq!(client.cmd(&["HSET", "big", "late", "x"]), Reply::Integer(1));
    assert!(!agree(&c), "c missed the write");
    let before = ae_bytes_sent(&c);
    fault(&c, 2, r#"{"op":"clear"}"#);
    assert!(
        wait_until(Duration::from_secs(5), || agree(&c)),
        "c holds the write after a round"
    );
    assert_eq!(c.client(2).cmd(&["HLEN", "big"]), Reply::Integer(5_001));
    assert_eq!(c.client(2).cmd(&["HGET", "big", "late"]), bulk("x"));
    ae_bytes_sent(&c) - before
}

#[test]
fn a_large_hash_that_missed_one_field_is_repaired_by_its_section_not_whole() {
    use ringkv::message::{PROTOCOL_VERSION, SECTIONS_SINCE};
    // By default (64 KiB) the hash is compared by sections; with a
    // threshold above its size, or with a replica of protocol 11, whole.
    let sectioned = repair_one_field_of_a_large_hash("65536", PROTOCOL_VERSION);
    let whole = repair_one_field_of_a_large_hash("100000000", PROTOCOL_VERSION);
    let older = repair_one_field_of_a_large_hash("65536", SECTIONS_SINCE - 1);
    eprintln!(
        "repairing one field: {sectioned} bytes by sections, {whole} whole, {older} with protocol 11"
    );
    // Each counts the rounds' group digests (16 KB a round that differs);
    // whole, the hash itself (about 300 KB) goes at least once each way.
    assert!(whole > 500_000, "{whole} bytes whole");
    assert!(
        older > 500_000,
        "{older} bytes with a replica of protocol 11"
    );
    assert!(sectioned * 4 < whole, "{sectioned} bytes by sections");
}
