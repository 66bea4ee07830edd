//! Clock faults, injected through the fault API (`{"op":"clock"}`): a
//! node whose wall clock is off loses no later write, is flagged past
//! `clock_warn_ms`, and is refused past `max_clock_skew_ms` until fixed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ringkv::resp::codec::Reply;

const HEARTBEAT_MS: u64 = 100;

fn flags(extra: &[&'static str]) -> Vec<&'static str> {
    let mut f = vec![
        "--fault-injection",
        "--set",
        "heartbeat_interval_ms=100",
        "--set",
        "failure_timeout_ms=1000",
    ];
    f.extend_from_slice(extra);
    f
}

/// Node `i`'s view of `peer`'s clock: (standing, offset in ms).
fn clock_of(c: &Cluster, i: usize, peer: &str) -> Option<(String, f64)> {
    let status = c.status(i)?;
    let clock = status.clocks.get(peer)?;
    Some((clock.standing.clone(), clock.offset_ms))
}

/// Sets node `i`'s clock `offset_ms` off and waits until every other node
/// estimates it within 100 ms with `standing`.
fn skew(c: &Cluster, i: usize, offset_ms: i64, standing: &str) {
    fault(
        c,
        i,
        &format!(r#"{{"op":"clock","offset_ms":{offset_ms}}}"#),
    );
    let name = c.nodes[i].name.clone();
    for j in (0..c.nodes.len()).filter(|j| *j != i) {
        assert!(
            wait_until(Duration::from_secs(10), || clock_of(c, j, &name)
                .is_some_and(
                    |(s, ms)| s == standing && (ms - offset_ms as f64).abs() < 100.0
                )),
            "{} never saw {name}'s clock {offset_ms} ms off as {standing}: {:?}",
            c.nodes[j].name,
            clock_of(c, j, &name)
        );
    }
}

/// Writes pairs of values to fresh keys that node 0 does not replicate
/// (so it learns of them from nothing but clocks), the first through
/// `first(replicas)`, the second through `second(replicas)` two heartbeat
/// intervals and a margin later, and counts the keys where a read of all
/// three replicas does not return the second.
fn later_writes_lost(
    c: &Cluster,
    prefix: &str,
    pairs: usize,
    first: impl Fn(&[String]) -> usize,
    second: impl Fn(&[String]) -> usize,
) -> usize {
    let mut lost = 0;
    let keys = (0..)
        .map(|n| format!("{prefix}:{n}"))
        .map(|key| {
            let replicas = strings(&c.client(0).cmd(&["RINGKV", "PREFLIST", &key]));
            (key, replicas)
        })
        .filter(|(_, replicas)| !replicas.contains(&c.nodes[0].name))
        .take(pairs)
        .collect::<Vec<_>>();
    for (key, replicas) in keys {
        let key = key.as_str();
        assert_eq!(
            c.client(first(&replicas)).cmd(&["SET", key, "first"]),
            Reply::ok()
        );
        // The rule under test is about time: a write more than two
        // heartbeat intervals after another wins. So this waits that long,
        // on purpose.
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS + 50));
        assert_eq!(
            c.client(second(&replicas)).cmd(&["SET", key, "second"]),
            Reply::ok()
        );
        let everywhere = (0..c.nodes.len()).all(|i| {
            let mut client = c.client(i);
            client.cmd(&["RINGKV", "QUORUM", "3", "2"]) == Reply::ok()
                && client.cmd(&["GET", key]) == bulk("second")
        });
        lost += usize::from(!everywhere);
    }
    lost
}

/// Index of a node that is neither node 0 (the skewed one) nor among
/// `replicas` (which node 0 is not among either).
fn not_a_replica(c: &Cluster, replicas: &[String]) -> usize {
    (1..c.nodes.len())
        .find(|i| !replicas.contains(&c.nodes[*i].name))
        .expect("five nodes, three replicas, node 0 not one of them")
}

/// One node's clock 30 s ahead, inside the 60 s limit: a write through
/// it, then one through a node that replicates nothing of the key two
/// heartbeats later, and the later write wins on every node, 15 times out
/// of 15.
#[test]
fn a_later_write_wins_with_one_clock_30_s_ahead() {
    let (c, lost) = later_writes_with_node_0_off(30_000, 15, false);
    println!("protocol 8, one clock 30 s ahead: {lost} of 15 later writes lost");
    assert_eq!(lost, 0, "later writes lost with a clock 30 s ahead");
    drop(c);
}

/// The same with the clock 30 s behind: a correct node writes first, then
/// the node behind, which replicates nothing of the key, writes.
#[test]
fn a_later_write_wins_with_one_clock_30_s_behind() {
    let (c, lost) = later_writes_with_node_0_off(-30_000, 15, false);
    println!("protocol 8, one clock 30 s behind: {lost} of 15 later writes lost");
    assert_eq!(lost, 0, "later writes lost with a clock 30 s behind");
    drop(c);
}

/// A fresh 5-node cluster whose node 0 has its clock `offset_ms` off:
/// the later writes lost out of `pairs`, the first write through the node
/// ahead (or a correct one), the second through a correct one (or the
/// node behind). At protocol 7 (`previous_protocol`) links carry no
/// clocks, so nobody can see the skew to wait for it.
fn later_writes_with_node_0_off(
    offset_ms: i64,
    pairs: usize,
    previous_protocol: bool,
) -> (Cluster, usize) {
    let names = ["s1", "s2", "s3", "s4", "s5"];
    let extra: &[&'static str] = match previous_protocol {
        true => &["--set", "peer_protocol_max=7"],
        false => &[],
    };
    let c = Cluster::start(&names, &flags(extra));
    if !previous_protocol {
        skew(&c, 0, offset_ms, "skewed");
    } else {
        fault(
            &c,
            0,
            &format!(r#"{{"op":"clock","offset_ms":{offset_ms}}}"#),
        );
    }
    let lost = if offset_ms > 0 {
        later_writes_lost(&c, "ahead", pairs, |_| 0, |r| not_a_replica(&c, r))
    } else {
        later_writes_lost(&c, "behind", pairs, |r| not_a_replica(&c, r), |_| 0)
    };
    (c, lost)
}

/// A node 10 s off against a 5 s limit: every other node refuses it (and
/// it them), so it is down for the others and the cluster goes on without
/// it; `/metrics` exports the offset; once its clock is put right it is
/// taken back.
#[test]
fn a_node_off_by_more_than_the_limit_is_refused_until_its_clock_is_fixed() {
    let names = ["r1", "r2", "r3"];
    let c = Cluster::start(&names, &flags(&["--set", "max_clock_skew_ms=5000"]));
    skew(&c, 2, 10_000, "refused");
    for i in 0..2 {
        assert!(
            wait_until(Duration::from_secs(10), || c.state_of(i, "r3")
                == Some(ringkv::membership::State::Down)),
            "{} still sees r3 up",
            c.nodes[i].name
        );
    }
    // r3 refuses the others as well: their clocks are 10 s behind its own.
    for peer in ["r1", "r2"] {
        let t = Instant::now();
        let mut seen = vec![];
        let ok = wait_until(Duration::from_secs(10), || {
            seen.push((t.elapsed().as_millis(), clock_of(&c, 2, peer)));
            clock_of(&c, 2, peer).is_some_and(|(s, _)| s == "refused")
        });
        assert!(ok, "r3's view of {peer}: {seen:?}");
    }
    assert!(
        c.log(0).contains("r3 refused: its wall clock is"),
        "the reason is logged"
    );
    let metrics = http_get(&c.nodes[0].admin, "/metrics").expect("/metrics");
    let offset = metrics
        .lines()
        .find(|l| l.starts_with("ringkv_peer_clock_offset_seconds{peer=\"r3\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .expect("r3's offset exported");
    assert!((offset - 10.0).abs() < 0.1, "offset {offset}");
    // The two others still take writes (W = 2).
    assert_eq!(c.client(0).cmd(&["SET", "k", "v"]), Reply::ok());
    // Fixed: everyone sees three up again, and the clocks agree.
    let fixed = Instant::now();
    skew(&c, 2, 0, "ok");
    for i in 0..3 {
        assert!(
            wait_until(Duration::from_secs(10), || c.up_count(i) == Some(3)),
            "{} does not see all three up after the fix",
            c.nodes[i].name
        );
    }
    eprintln!("taken back {:?} after the clock was fixed", fixed.elapsed());
    assert_eq!(c.client(2).cmd(&["GET", "k"]), bulk("v"));
}

/// The same faults at protocol 7, whose links carry no clocks: how many
/// later writes are lost (the "before" figure of BENCHMARKS.md; run by
/// `bench/clock-skew.sh`). Prints, asserts nothing about the count.
#[test]
#[ignore = "a measurement of the previous protocol, run by bench/clock-skew.sh"]
fn measure_later_writes_lost_at_protocol_7() {
    let (c, ahead) = later_writes_with_node_0_off(30_000, 30, true);
    drop(c);
    let (c, behind) = later_writes_with_node_0_off(-30_000, 30, true);
    drop(c);
    println!("protocol 7, one clock 30 s ahead: {ahead} of 30 later writes lost");
    println!("protocol 7, one clock 30 s behind: {behind} of 30 later writes lost");
}
