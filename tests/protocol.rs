//! Peer protocol versions across real node processes: a node made to speak
//! the previous version (`peer_protocol_max=5`, as a released node does)
//! in a cluster of this version's nodes, as in a rolling upgrade.

mod common;
#[path = "support/prom.rs"]
mod prom;

use std::time::Duration;

use common::{bulk, http_get, wait_until, Cluster};
use ringkv::message::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use ringkv::resp::codec::Reply;

/// The protocol version node `i` reports for its link to `name`.
fn protocol(c: &Cluster, i: usize, name: &str) -> Option<u32> {
    let status = c.status(i)?;
    status.nodes.iter().find(|n| n.name == name)?.protocol
}

fn counter(c: &Cluster, i: usize, name: &str) -> f64 {
    labelled(c, i, name, &[])
}

fn labelled(c: &Cluster, i: usize, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = http_get(&c.nodes[i].admin, "/metrics").expect("/metrics answers 200");
    let metrics = prom::parse(&text).unwrap_or_else(|e| panic!("/metrics: {e}\n{text}"));
    metrics
        .get(name, labels)
        .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

#[test]
fn a_node_speaking_the_previous_version_serves_and_is_served_by_new_ones() {
    let mut c = Cluster::start(&["a", "b"], &[]);
    let old = c.add("old", &["--set", "peer_protocol_max=5"]);
    for i in 0..3 {
        assert!(
            wait_until(Duration::from_secs(20), || c.up_count(i) == Some(3)),
            "{} does not see all three up",
            c.nodes[i].name
        );
    }

    // Every write, through any node, reads back through every node (N = 3,
    // R = W = 2: every read and write crosses links of both versions).
    for w in 0..3 {
        let reply = c
            .client(w)
            .cmd(&["SET", &format!("k{w}"), &format!("v{w}")]);
        assert_eq!(reply, Reply::ok(), "SET through {}", c.nodes[w].name);
    }
    for r in 0..3 {
        let mut client = c.client(r);
        for w in 0..3 {
            assert_eq!(
                client.cmd(&["GET", &format!("k{w}")]),
                bulk(&format!("v{w}")),
                "k{w} read through {}",
                c.nodes[r].name
            );
        }
    }

    // Each side's links settled on the newest version both speak.
    let want = [
        (0, "old", 5),
        (0, "b", PROTOCOL_VERSION),
        (1, "old", 5),
        (1, "a", PROTOCOL_VERSION),
        (old, "a", 5),
        (old, "b", 5),
    ];
    for (i, name, version) in want {
        assert!(
            wait_until(Duration::from_secs(5), || protocol(&c, i, name)
                == Some(version)),
            "{} reports protocol {:?} for {name}, not {version}",
            c.nodes[i].name,
            protocol(&c, i, name)
        );
    }
    let (a, capped) = (c.status(0).unwrap(), c.status(old).unwrap());
    assert_eq!(
        (a.protocol_min, a.protocol_max),
        (MIN_PROTOCOL_VERSION, PROTOCOL_VERSION)
    );
    assert_eq!((capped.protocol_min, capped.protocol_max), (5, 5));
    assert_eq!(protocol(&c, old, "old"), Some(5), "a node's own row");

    // A read-modify-write crosses links of both versions (the old node gets
    // its write as a plain Put).
    for w in 0..3 {
        let mut client = c.client(w);
        assert_eq!(client.cmd(&["SET", "rmw", "a"]), Reply::ok());
        assert_eq!(client.cmd(&["APPEND", "rmw", "b"]), Reply::Integer(2));
        for r in 0..3 {
            assert_eq!(
                c.client(r).cmd(&["GET", "rmw"]),
                bulk("ab"),
                "via {w}, read {r}"
            );
        }
    }
    // FLUSHALL needs the cluster-wide record, which the old node cannot
    // hold: refused while it is up, naming it, and nothing is flushed.
    assert_eq!(
        c.client(0).cmd(&["FLUSHALL"]),
        Reply::err(
            "FLUSHALL and ACL changes need every node up to speak peer protocol 6 or later, and old speaks 5: \
             finish the upgrade first"
        )
    );
    assert_eq!(c.client(1).cmd(&["GET", "k0"]), bulk("v0"));
    // Expiry, counters, hashes and sets cannot reach the old node (every
    // key has it as a replica here): refused, naming it, before anything is
    // written anywhere.
    for cmd in [
        &["HSET", "h", "f", "v"][..],
        &["SET", "e", "v", "EX", "100"],
        &["SADD", "s", "m"],
    ] {
        let Reply::Error(why) = c.client(0).cmd(cmd) else {
            panic!("{cmd:?} was not refused");
        };
        assert!(
            why.contains("need peer protocol 7, and old, a replica of this key, speaks 5: finish the upgrade first"),
            "{cmd:?}: {why}"
        );
    }
    assert_eq!(
        c.client(1).cmd(&["EXISTS", "h", "e", "s"]),
        Reply::Integer(0)
    );
    // So are increments, whichever node owns the key's counter: the old
    // one (sixty keys: some have it first), this node or b, which refuse
    // before they apply anything.
    let mut client = c.client(0);
    let mut first_old = 0;
    for i in 0..60 {
        let key = format!("n{i}");
        let Reply::Error(why) = client.cmd(&["INCR", &key]) else {
            panic!("INCR {key} was not refused");
        };
        if why.contains("counters need peer protocol 7, and old, the key's first replica, speaks 5")
        {
            first_old += 1;
        } else {
            assert!(
                why.contains("need peer protocol 7, and old, a replica of this key, speaks 5: finish the upgrade first"),
                "INCR {key}: {why}"
            );
        }
    }
    assert!(first_old > 0, "no key had old first");
    let keys: Vec<String> = (0..60).map(|i| format!("n{i}")).collect();
    for r in 0..2 {
        let mut exists = vec!["EXISTS"];
        exists.extend(keys.iter().map(String::as_str));
        assert_eq!(c.client(r).cmd(&exists), Reply::Integer(0), "through {r}");
    }

    // No version was refused and no message lacked a version to travel in.
    // (A refusal of another kind can happen at start: a connect superseded
    // when the peer is first heard from closes mid-handshake.)
    for i in 0..3 {
        let log = c.log(i);
        assert!(
            !log.lines()
                .any(|l| l.contains("refused") && l.contains("protocol version")),
            "{log}"
        );
        assert_eq!(
            counter(&c, i, "ringkv_peer_messages_unsupported_total"),
            0.0
        );
    }
}

/// Typed writes and reads pipelined through every node of a cluster in
/// which one node speaks the version before protocol 11: between this
/// version's nodes they travel coalesced (`Applies`, `ApplyAcks` and
/// `ReadReplies`, protocol 11), to and from the other one by one, and
/// every field and member reads back through every node.
#[test]
fn typed_writes_coalesce_between_new_nodes_and_go_one_by_one_to_an_older_one() {
    let previous = ringkv::message::APPLIES_SINCE - 1;
    let cap = format!("peer_protocol_max={previous}");
    let mut c = Cluster::start(&["a", "b"], &[]);
    let old = c.add("prev", &["--set", &cap]);
    for (i, name, version) in [(0, "b", PROTOCOL_VERSION), (0, "prev", previous)] {
        assert!(
            wait_until(Duration::from_secs(20), || protocol(&c, i, name)
                == Some(version)),
            "a reports protocol {:?} for {name}, not {version}",
            protocol(&c, i, name)
        );
    }
    assert!(wait_until(Duration::from_secs(20), || c.up_count(old) == Some(3)));

    const EACH: usize = 300;
    for w in 0..3 {
        let mut client = c.client(w);
        for i in 0..EACH {
            client.send(&["HSET", "h", &format!("f{w}-{i}"), "v"]);
            client.send(&["SADD", "s", &format!("m{w}-{i}")]);
        }
        for i in 0..2 * EACH {
            assert_eq!(client.read(), Some(Reply::Integer(1)), "reply {i} via {w}");
        }
    }
    for k in 0..16 {
        let key = format!("r{k}");
        assert_eq!(
            c.client(0).cmd(&["HSET", &key, "f", "v"]),
            Reply::Integer(1)
        );
    }
    for r in 0..3 {
        let mut client = c.client(r);
        assert_eq!(client.cmd(&["HLEN", "h"]), Reply::Integer(3 * EACH as i64));
        assert_eq!(client.cmd(&["SCARD", "s"]), Reply::Integer(3 * EACH as i64));
        assert_eq!(client.cmd(&["HGET", "h", "f2-7"]), bulk("v"));
        // Reads of part of a key, pipelined: their answers coalesce too.
        // Over 16 keys, as a coordinator's choice of which other replica
        // to read from turns with the key.
        for i in 0..EACH {
            client.send(&["HGET", &format!("r{}", i % 16), "f"]);
            client.send(&["SISMEMBER", "s", &format!("m{r}-{i}")]);
        }
        for i in 0..EACH {
            assert_eq!(client.read(), Some(bulk("v")), "HGET {i} via {r}");
            assert_eq!(
                client.read(),
                Some(Reply::Integer(1)),
                "SISMEMBER {i} via {r}"
            );
        }
    }

    let kind = |i: usize, sent: &str, kind: &str| {
        let name = format!("ringkv_peer_messages_{sent}_by_kind_total");
        labelled(&c, i, &name, &[("kind", kind)])
    };
    for kind_name in ["applies", "apply_acks", "read_replies"] {
        for i in 0..2 {
            assert!(kind(i, "sent", kind_name) > 0.0, "{i} sent no {kind_name}");
        }
        assert_eq!(kind(old, "sent", kind_name), 0.0, "prev sent {kind_name}");
        assert_eq!(
            kind(old, "received", kind_name),
            0.0,
            "prev got {kind_name}"
        );
    }
    assert!(kind(old, "received", "apply") >= (2 * 2 * EACH) as f64);
    for i in 0..3 {
        assert_eq!(
            counter(&c, i, "ringkv_peer_messages_unsupported_total"),
            0.0
        );
    }
}

#[test]
fn a_protocol_version_this_build_does_not_speak_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let node = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv"));
        cmd.args(["node", "--data-dir"]).arg(dir.path());
        cmd
    };
    let out = node()
        .args(["--set", "peer_protocol_max=4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "ringkv: config: peer_protocol_max: 4 is not a protocol version this build \
             speaks ({MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})"
        )
    );
    let too_new = (PROTOCOL_VERSION + 1).to_string();
    let out = node()
        .env("RINGKV_PEER_PROTOCOL_MAX", &too_new)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("peer_protocol_max: {too_new} is not")),
        "{stderr}"
    );
}

/// Increments through a coordinator that is one of the key's replicas but
/// not its owner. An owner of this version brings the delta back with its
/// answer (`IncrCarry`, `IncrCarried`, protocol 13), so the coordinator's
/// own copy holds the new total when the client is answered; an owner at
/// the previous version is sent the plain `Incr` it knows and answers as
/// before. Both ways every increment counts once, through every node.
#[test]
fn an_increment_through_a_replica_comes_back_with_its_delta_and_counts_once() {
    let previous = ringkv::message::CARRY_SINCE - 1;
    let cap = format!("peer_protocol_max={previous}");
    let mut c = Cluster::start(&["a", "b"], &[]);
    let old = c.add("prev", &["--set", &cap]);
    for (name, version) in [("b", PROTOCOL_VERSION), ("prev", previous)] {
        assert!(
            wait_until(Duration::from_secs(20), || protocol(&c, 0, name)
                == Some(version)),
            "a reports protocol {:?} for {name}, not {version}",
            protocol(&c, 0, name)
        );
    }
    assert!(wait_until(Duration::from_secs(20), || (0..3)
        .all(|i| c.up_count(i) == Some(3))));
    let sent = |c: &Cluster, kind: &str| {
        labelled(
            c,
            0,
            "ringkv_peer_messages_sent_by_kind_total",
            &[("kind", kind)],
        )
    };
    for owner in ["b", "prev"] {
        // A key whose first replica (its owner) is `owner`; with N = 3 on
        // three nodes, `a` holds a copy of every key.
        let key = (0..10_000)
            .map(|i| format!("hits-{owner}-{i}"))
            .find(|k| {
                let pref = common::strings(&c.client(0).cmd(&["RINGKV", "PREFLIST", k]));
                pref.first().map(String::as_str) == Some(owner)
            })
            .expect("some key is owned there");
        let (carry0, incr0) = (sent(&c, "incr_carry"), sent(&c, "incr"));
        let mut client = c.client(0);
        for n in 1..=20 {
            assert_eq!(client.cmd(&["INCRBY", &key, "3"]), Reply::Integer(3 * n));
            if owner == "b" {
                let local = client.cmd(&["RINGKV", "LOCAL", &key]);
                assert_eq!(
                    common::strings(&local).first(),
                    Some(&(3 * n).to_string()),
                    "a's own copy when it answered increment {n}: {local:?}"
                );
            }
        }
        let (carried, plain) = (sent(&c, "incr_carry") - carry0, sent(&c, "incr") - incr0);
        match owner {
            "b" => assert_eq!((carried, plain), (20.0, 0.0), "to the owner b"),
            _ => assert_eq!((carried, plain), (0.0, 20.0), "to the owner {owner}"),
        }
        for i in [0, 1, old] {
            assert_eq!(
                c.client(i).cmd(&["GET", &key]),
                bulk("60"),
                "{key} through {i}"
            );
        }
    }
}
