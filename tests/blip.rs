//! A short outage moves only what was written during it: a node paused
//! (SIGSTOP) for a few seconds gets back the writes it missed, and no
//! other node is filled with its ranges meanwhile. Past `rebuild_delay_ms`
//! its replicas are rebuilt on the others, as before.

mod common;

use std::time::Duration;

use common::*;
use ringkv::membership::State;
use ringkv::resp::codec::Reply;

const NAMES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

fn signal(c: &Cluster, i: usize, sig: &str) {
    let pid = c.pid(i).expect("node runs").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Entries moved between nodes so far, as sent by the nodes but `skip`:
/// by anti-entropy (each counted once, by its sender) and by hand-off.
fn moved(c: &Cluster, skip: Option<usize>) -> u64 {
    (0..c.nodes.len())
        .filter(|i| Some(*i) != skip)
        .map(|i| {
            let status = c.status(i).expect("status");
            let ae: u64 = status.anti_entropy.values().map(|p| p.keys_sent).sum();
            ae + metric(c, i, "ringkv_handoff_sent_total")
        })
        .sum()
}

/// Hand-off backlog of node `i`.
fn backlog(c: &Cluster, i: usize) -> u64 {
    metric(c, i, "ringkv_handoff_backlog")
}

fn metric(c: &Cluster, i: usize, name: &str) -> u64 {
    let text = http_get(&c.nodes[i].admin, "/metrics").expect("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics")) as u64
}

/// Live keys held across the cluster.
fn copies(c: &Cluster) -> u64 {
    (0..c.nodes.len()).map(|i| c.status(i).unwrap().keys).sum()
}

/// Waits until every node holds exactly the keys `{prefix}0..count` it
/// replicates: writes made before every node was up reach their replicas
/// by hand-off, and the stand-ins drop theirs, so three copies in all is
/// not yet settled.
fn settle(c: &Cluster, prefix: &str, count: u64) {
    let mut share = vec![0u64; c.nodes.len()];
    let mut client = c.client(0);
    for k in 0..count {
        for name in strings(&client.cmd(&["RINGKV", "PREFLIST", &format!("{prefix}{k}")])) {
            share[c.index(&name)] += 1;
        }
    }
    let held = || -> Vec<u64> {
        (0..c.nodes.len())
            .map(|i| c.status(i).map_or(0, |s| s.keys))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || held() == share),
        "held {:?}, replicated {share:?}",
        held()
    );
}

fn write(c: &Cluster, node: usize, prefix: &str, count: usize) {
    let mut client = c.client(node);
    let value = "x".repeat(200);
    for k in 0..count {
        assert_eq!(
            client.cmd(&["SET", &format!("{prefix}{k}"), &value]),
            Reply::ok()
        );
    }
}

#[test]
fn a_paused_node_gets_back_only_the_writes_it_missed() {
    let c = Cluster::start(&NAMES, &[]);
    let keys = 2000u64;
    write(&c, 0, "old", keys as usize);
    settle(&c, "old", keys);
    let victim = c.index("n3");
    let before = moved(&c, None);
    let before_others = moved(&c, Some(victim));

    signal(&c, victim, "-STOP");
    for i in (0..5).filter(|i| *i != victim) {
        assert!(wait_until(Duration::from_secs(5), || c.state_of(i, "n3")
            == Some(State::Down)));
    }
    // Writes while n3 is away: those of its keys go to nodes standing in.
    let during = 60u64;
    write(&c, 0, "new", during as usize);
    // The stand-ins hold them for n3, and nothing of n3's 2000-odd keys
    // was copied to them.
    assert!(wait_until(Duration::from_secs(5), || (0..5)
        .filter(|i| *i != victim)
        .map(|i| backlog(&c, i))
        .sum::<u64>()
        > 0));
    let while_away = moved(&c, Some(victim)) - before_others;
    assert!(
        while_away <= 2 * during,
        "{while_away} entries moved while n3 was away"
    );

    signal(&c, victim, "-CONT");
    for i in 0..5 {
        assert!(wait_until(Duration::from_secs(10), || c.up_count(i) == Some(5)));
    }
    // Converged: every key on exactly its three replicas (n3 holding each
    // of the new keys it is a replica of), nothing waiting. The count of
    // copies alone is met while a stray still sits on its stand-in.
    let total = keys + during;
    let mine: Vec<String> = (0..during)
        .map(|k| format!("new{k}"))
        .filter(|key| {
            strings(&c.client(0).cmd(&["RINGKV", "PREFLIST", key]))
                .iter()
                .any(|p| p == "n3")
        })
        .collect();
    assert!(!mine.is_empty(), "none of the new keys is n3's");
    let held = |c: &Cluster| {
        mine.iter()
            .filter(|key| {
                matches!(
                    c.client(victim).cmd(&["RINGKV", "LOCAL", key]),
                    Reply::Array(_)
                )
            })
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(20), || copies(&c) == 3 * total
            && held(&c) == mine.len()
            && (0..5).all(|i| backlog(&c, i) == 0)),
        "{} copies of {total} keys; n3 holds {} of its {} new keys; backlog {:?}",
        copies(&c),
        held(&c),
        mine.len(),
        (0..5).map(|i| backlog(&c, i)).collect::<Vec<_>>()
    );
    let total_moved = moved(&c, None) - before;
    eprintln!(
        "entries moved: {while_away} while n3 was away, {total_moved} in all, for {during} writes"
    );
    // About 3/5 of the writes had n3 as a replica; each reaches it once by
    // hand-off and at most once more by each anti-entropy round that
    // races it. Copying n3's ranges would have moved over 1,000.
    assert!(
        total_moved <= 2 * during,
        "{total_moved} entries moved for {during} writes during the outage"
    );
}

#[test]
fn past_the_rebuild_delay_the_ranges_of_a_node_down_are_rebuilt() {
    let mut c = Cluster::start(&NAMES, &["--set", "rebuild_delay_ms=1500"]);
    let keys = 300u64;
    write(&c, 0, "k", keys as usize);
    let victim = c.index("n5");
    settle(&c, "k", keys);
    c.kill(victim);
    // Within the delay, the four hold what they held; after it, they hold
    // three copies of every key among them.
    let four = |c: &Cluster| -> u64 { (0..4).map(|i| c.status(i).unwrap().keys).sum() };
    // (n5 is seen down 300 ms after the kill, and its delay runs from
    // there: for the first second nothing may be rebuilt.)
    let killed = std::time::Instant::now();
    while killed.elapsed() < Duration::from_secs(1) {
        assert!(four(&c) < 3 * keys, "rebuilt within the delay");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        wait_until(Duration::from_secs(15), || four(&c) == 3 * keys),
        "{} copies among the four",
        four(&c)
    );
}
