//! Placement through real processes: the tokens a data directory keeps,
//! what `/status` shows of them, and a peer with another N refused.

mod common;

use std::time::Duration;

use common::*;
use ringkv::membership::State;
use ringkv::placement::DEFAULT_TOKENS;
use ringkv::ring::{node_tokens, Token};

fn tokens_hex(name: &str, count: usize) -> Vec<String> {
    let mut all = node_tokens(name, count);
    all.sort();
    all.iter().map(Token::hex).collect()
}

#[test]
fn status_lists_every_token_and_a_balanced_share_of_replicas() {
    let c = Cluster::start(&["a1", "b2", "c3", "d4", "e5"], &[]);
    let status = c.status(0).unwrap();
    assert_eq!(status.nodes.len(), 5);
    for n in &status.nodes {
        assert_eq!(n.tokens, tokens_hex(&n.name, DEFAULT_TOKENS), "{}", n.name);
        assert_eq!(n.token, Token::of(n.name.as_bytes()).hex());
        assert!(
            (0.8..=1.25).contains(&n.balance),
            "{} holds {:.3}x the mean of replicas",
            n.name,
            n.balance
        );
    }
    // /metrics has the same balance, one gauge a node.
    let metrics = http_get(&c.nodes[0].admin, "/metrics").unwrap();
    for n in &status.nodes {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("ringkv_ring_balance{{node=\"{}\"}} ", n.name)))
            .unwrap_or_else(|| panic!("no ring_balance of {} in /metrics", n.name));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            (value - n.balance).abs() < 1e-9,
            "{line} against {}",
            n.balance
        );
    }
    let leaving = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringkv_leaving ")?.parse::<f64>().ok());
    assert_eq!(leaving, Some(0.0), "{metrics}");
    // Every node places a key alike (the same tokens for every peer).
    for k in 0..20 {
        let key = format!("k{k}");
        let first = strings(&c.client(0).cmd(&["RINGKV", "PREFLIST", &key]));
        for i in 1..5 {
            assert_eq!(
                strings(&c.client(i).cmd(&["RINGKV", "PREFLIST", &key])),
                first
            );
        }
    }
}

#[test]
fn a_data_directory_keeps_the_tokens_it_was_made_with() {
    let mut c = Cluster::start(&["p1", "p2"], &["--set", "vnodes=8"]);
    let placement = c.nodes[0].data_dir.join("placement");
    let text = std::fs::read_to_string(&placement).unwrap();
    assert!(text.contains("tokens = 8\nreplication = 3\n"), "{text}");
    // Restarted with another setting: still 8 tokens.
    c.kill(0);
    c.nodes[0].flags = Some(vec!["--set".into(), "vnodes=32".into()]);
    c.spawn(0);
    assert!(wait_until(Duration::from_secs(20), || c.up_count(1) == Some(2)));
    let me = |c: &Cluster, i: usize| {
        let s = c.status(i).unwrap();
        s.nodes.into_iter().find(|n| n.name == "p1").unwrap()
    };
    assert_eq!(me(&c, 0).tokens, tokens_hex("p1", 8));
    assert!(wait_until(Duration::from_secs(10), || me(&c, 1).tokens
        == tokens_hex("p1", 8)));
    assert!(c.log(0).contains("vnodes setting ignored"));

    // A data directory made before the placement file existed (it has a
    // generation, no placement) keeps the one token it was made with.
    c.kill(1);
    std::fs::remove_file(c.nodes[1].data_dir.join("placement")).unwrap();
    c.nodes[1].flags = Some(Vec::new());
    c.spawn(1);
    let p2 = std::fs::read_to_string(c.nodes[1].data_dir.join("placement")).unwrap();
    assert!(p2.contains("tokens = 1\n"), "{p2}");
    assert!(wait_until(Duration::from_secs(10), || {
        c.status(0)
            .and_then(|s| s.nodes.into_iter().find(|n| n.name == "p2"))
            .is_some_and(|n| n.state == State::Up && n.tokens == tokens_hex("p2", 1))
    }));
}

#[test]
fn a_node_started_with_another_replication_factor_is_refused() {
    let mut c = Cluster::start(&["r1", "r2"], &[]);
    // Its own data directory was made for N = 3: it will not start as 2.
    c.kill(1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(["node", "--name", "r2", "--data-dir"])
        .arg(&c.nodes[1].data_dir)
        .args(["--set", "replication=2", "--set", "read_quorum=1"])
        .args(["--set", "write_quorum=1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config: replication: 2, but ") && err.contains("made for replication 3"),
        "{err}"
    );

    // A new node made for N = 2 joins the N = 3 cluster: both sides refuse
    // it, and say why.
    let i = c.add(
        "odd",
        &[
            "--set",
            "replication=2",
            "--set",
            "read_quorum=1",
            "--set",
            "write_quorum=1",
        ],
    );
    let refused = |c: &Cluster, at: usize| {
        c.log(at)
            .contains("odd refused: it places keys on 2 replicas and this node on 3")
    };
    assert!(
        wait_until(Duration::from_secs(10), || refused(&c, 0)),
        "{}",
        c.log(0)
    );
    assert!(wait_until(Duration::from_secs(10), || c.log(i).contains(
        "r1 refused: it places keys on 3 replicas and this node on 2"
    )));
    // Refused means never up, for as long as both keep heartbeating.
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < deadline {
        assert_ne!(c.state_of(0, "odd"), Some(State::Up));
        assert_ne!(c.state_of(i, "r1"), Some(State::Up));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Entries sent between nodes so far: by anti-entropy (each counted once,
/// by its sender) and by hand-off.
fn moved(c: &Cluster) -> u64 {
    (0..c.nodes.len())
        .map(|i| {
            let status = c.status(i).expect("status");
            let ae: u64 = status.anti_entropy.values().map(|p| p.keys_sent).sum();
            let text = http_get(&c.nodes[i].admin, "/metrics").expect("/metrics");
            let handoff = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("ringkv_handoff_sent_total ")?
                        .parse::<f64>()
                        .ok()
                })
                .expect("ringkv_handoff_sent_total") as u64;
            ae + handoff
        })
        .sum()
}

#[test]
fn a_sixth_node_receives_about_its_share_of_copies() {
    let mut c = Cluster::start(&["a", "b", "c", "d", "e"], &[]);
    let keys = 3000u64;
    let mut client = c.client(0);
    for k in 0..keys {
        assert_eq!(
            client.cmd(&["SET", &format!("k{k}"), "v"]),
            ringkv::resp::codec::Reply::ok()
        );
    }
    let copies = |c: &Cluster| -> u64 {
        (0..c.nodes.len())
            .map(|i| c.status(i).map_or(0, |s| s.keys))
            .sum()
    };
    assert!(wait_until(Duration::from_secs(20), || copies(&c) == 3 * keys));
    let before = moved(&c);
    let f = c.add("f", &[]);
    assert!(wait_until(Duration::from_secs(20), || c.up_count(f) == Some(6)));
    // Converged: three copies of every key among the six, f holding its
    // share.
    assert!(
        wait_until(Duration::from_secs(20), || copies(&c) == 3 * keys
            && c.status(f).is_some_and(|s| s.keys > 0)),
        "{} copies; logs:\n{}",
        copies(&c),
        (0..6)
            .map(|i| c.log(i))
            .collect::<Vec<_>>()
            .join("\n")
            .lines()
            .filter(|l| l.contains("handed off") || l.contains("hand-off") || l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Anti-entropy with f starts a moment after the hand-offs
    // (`sync::HANDOFF_FIRST`); what it sends counts too, so every round
    // between f and the others must have ended.
    let names = ["a", "b", "c", "d", "e", "f"];
    let agreed = |i: usize, peer: &str| {
        c.status(i).is_some_and(|s| {
            s.anti_entropy
                .get(peer)
                .is_some_and(|p| p.last_agreement_unix_ms.is_some())
        })
    };
    assert!(wait_until(Duration::from_secs(20), || (0..5)
        .all(|i| agreed(i, "f") && agreed(f, names[i]))));
    let received = moved(&c) - before;
    let ideal = 3 * keys / 6;
    let held = c.status(f).unwrap().keys;
    let handoff: u64 = (0..6)
        .map(|i| {
            let text = http_get(&c.nodes[i].admin, "/metrics").unwrap();
            text.lines()
                .find_map(|l| {
                    l.strip_prefix("ringkv_handoff_sent_total ")?
                        .parse::<f64>()
                        .ok()
                })
                .unwrap() as u64
        })
        .sum();
    eprintln!(
        "a sixth node: holds {held}, {received} copies moved (hand-off {handoff}), ideal {ideal}"
    );
    // Placement: f takes about its share (the ring's tests bound it at
    // 1.3x for several name sets; these names give about 1.0x).
    assert!(
        held as f64 <= 1.3 * ideal as f64,
        "f holds {held}, ideal {ideal}"
    );
    // Delivery: the replica f replaces hands its copies off, and the two
    // replicas that keep a range reconcile with f only after that, so
    // each entry reaches f about once: the issue asks at most 1.3x the
    // ideal. (Before the wait, they raced the hand-off and sent the same
    // entries again: 1.15x to 1.8x in ten runs.)
    assert!(
        (received as f64) <= 1.3 * ideal as f64,
        "{received} copies moved, ideal {ideal}"
    );
}
