//! The cluster core through real processes and real sockets.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ringkv::membership::State;
use ringkv::resp::codec::Reply;
use ringkv::ring::{NodeName, Ring};

const FIVE: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

fn ring_of(names: &[&str]) -> Ring {
    Ring::new(
        names.iter().map(|n| NodeName::from(*n)),
        ringkv::placement::DEFAULT_TOKENS,
    )
}

fn holds(c: &Cluster, i: usize, key: &str, value: &str) -> bool {
    match c.client(i).cmd(&["RINGKV", "LOCAL", key]) {
        Reply::Array(items) => items.first() == Some(&bulk(value)),
        _ => false,
    }
}

fn write_keys(c: &Cluster, node: usize, count: usize, prefix: &str) {
    let mut client = c.client(node);
    for k in 0..count {
        let key = format!("{prefix}{k}");
        assert_eq!(
            client.cmd(&["SET", &key, &format!("v{k}")]),
            Reply::ok(),
            "SET {key}"
        );
    }
}

#[test]
fn a_write_reads_back_everywhere_and_lives_exactly_on_its_preference_list() {
    let c = Cluster::start(&FIVE, &[]);
    write_keys(&c, 0, 40, "k");
    let ring = ring_of(&FIVE);
    for k in 0..40 {
        let key = format!("k{k}");
        let value = format!("v{k}");
        for (i, name) in FIVE.iter().enumerate() {
            assert_eq!(
                c.client(i).cmd(&["GET", &key]),
                bulk(&value),
                "GET {key} via {}",
                name
            );
        }
        let expected: Vec<String> = ring
            .preference_list_for_key(key.as_bytes(), 3)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            strings(&c.client(2).cmd(&["RINGKV", "PREFLIST", &key])),
            expected
        );
        // The third replica's write may still be in flight after W = 2 acks.
        assert!(
            wait_until(Duration::from_secs(3), || {
                (0..FIVE.len())
                    .all(|i| holds(&c, i, &key, &value) == expected.contains(&FIVE[i].to_string()))
            }),
            "{key} should be held exactly by {expected:?}"
        );
    }
    let counts: Vec<u64> = (0..FIVE.len()).map(|i| c.status(i).unwrap().keys).collect();
    if counts.iter().sum::<u64>() != 40 * 3 {
        // Say where the copies are now, so that a failure can be explained.
        let misplaced: Vec<String> = (0..40)
            .filter_map(|k| {
                let key = format!("k{k}");
                let expected = ring.preference_list_for_key(key.as_bytes(), 3);
                let holders: Vec<String> = (0..FIVE.len())
                    .filter(|&i| holds(&c, i, &key, &format!("v{k}")))
                    .map(|i| FIVE[i].to_string())
                    .collect();
                let expected: Vec<String> = expected.iter().map(|n| n.to_string()).collect();
                (holders.len() != 3 || holders.iter().any(|h| !expected.contains(h)))
                    .then(|| format!("{key}: held by {holders:?}, expected {expected:?}"))
            })
            .collect();
        panic!(
            "/status key counts {counts:?} do not add up to three copies of each key; {misplaced:?}"
        );
    }
    assert_eq!(c.client(4).cmd(&["DBSIZE"]), Reply::Integer(40));
}

#[test]
fn sigkill_of_one_node_in_five_fails_over_without_errors_and_remakes_copies() {
    // Copies are remade once the dead node's rebuild delay passes (60 s by
    // default; tests/blip.rs covers what happens before).
    let mut c = Cluster::start(&FIVE, &["--set", "rebuild_delay_ms=300"]);
    write_keys(&c, 0, 100, "k");
    // A load through two survivors, running across the failure.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let loaders: Vec<_> = [0usize, 2]
        .into_iter()
        .map(|i| {
            let mut client = c.client(i);
            let (stop, errors, done) = (stop.clone(), errors.clone(), done.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("k{}", n % 100);
                    let ok_set = client.cmd(&["SET", &format!("load{i}-{n}"), "x"]) == Reply::ok();
                    let ok_get = client.cmd(&["GET", &key]) == bulk(&format!("v{}", n % 100));
                    if !(ok_set && ok_get) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(2, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(5), || done
        .load(Ordering::Relaxed)
        > 100));
    let victim = c.index("n2");
    let killed_at = Instant::now();
    c.kill(victim);
    let survivors: Vec<usize> = (0..FIVE.len()).filter(|&i| i != victim).collect();
    for &i in &survivors {
        assert!(wait_until(Duration::from_secs(5), || c.state_of(i, "n2")
            == Some(State::Down)));
    }
    let detected = killed_at.elapsed();
    // Keep the load going a little past the failover.
    let mark = done.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(5), || done
        .load(Ordering::Relaxed)
        > mark + 100));
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.join().unwrap();
    }
    eprintln!(
        "failover: all survivors marked n2 down {detected:?} after SIGKILL; {} requests, {} failed",
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "no request failed during failover"
    );
    assert!(
        detected < Duration::from_millis(FAILURE_MS + 4 * HEARTBEAT_MS + 400),
        "detection took {detected:?}"
    );
    // Every key is back to three copies on the survivors' ring.
    let alive: Vec<&str> = survivors.iter().map(|&i| FIVE[i]).collect();
    let ring = ring_of(&alive);
    for k in 0..100 {
        let key = format!("k{k}");
        let pref = ring.preference_list_for_key(key.as_bytes(), 3);
        assert!(
            wait_until(Duration::from_secs(5), || pref.iter().all(|n| holds(
                &c,
                c.index(n),
                &key,
                &format!("v{k}")
            ))),
            "{key} not re-replicated to {pref:?}"
        );
    }
}

#[test]
fn a_restarted_node_is_up_everywhere_again_and_holds_its_keys() {
    let mut c = Cluster::start(&FIVE, &[]);
    write_keys(&c, 0, 60, "k");
    let victim = c.index("n3");
    let old_gen = c.status(victim).unwrap().generation;
    c.kill(victim);
    assert!(wait_until(Duration::from_secs(5), || c.state_of(0, "n3")
        == Some(State::Down)));
    c.spawn(victim);
    for (i, name) in FIVE.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(5), || c.state_of(i, "n3")
                == Some(State::Up)),
            "{} sees n3 up",
            name
        );
        let seen = c
            .status(i)
            .unwrap()
            .nodes
            .into_iter()
            .find(|n| n.name == "n3")
            .unwrap();
        assert!(
            seen.generation > old_gen,
            "a restart carries a higher generation"
        );
    }
    let ring = ring_of(&FIVE);
    let mine: Vec<usize> = (0..60)
        .filter(|k| {
            ring.preference_list_for_key(format!("k{k}").as_bytes(), 3)
                .iter()
                .any(|n| &**n == "n3")
        })
        .collect();
    assert!(!mine.is_empty());
    for k in mine {
        assert!(
            wait_until(Duration::from_secs(5), || holds(
                &c,
                victim,
                &format!("k{k}"),
                &format!("v{k}")
            )),
            "n3 holds k{k} again"
        );
    }
}

#[test]
fn a_cluster_shrunk_to_one_node_still_reads_and_writes() {
    let names = ["a", "b", "c"];
    let mut c = Cluster::start(&names, &[]);
    write_keys(&c, 0, 20, "k");
    c.kill(1);
    c.kill(2);
    assert!(wait_until(Duration::from_secs(5), || c.up_count(0) == Some(1)));
    let mut client = c.client(0);
    for k in 0..20 {
        assert_eq!(
            client.cmd(&["GET", &format!("k{k}")]),
            bulk(&format!("v{k}"))
        );
    }
    assert_eq!(client.cmd(&["SET", "alone", "yes"]), Reply::ok());
    assert_eq!(client.cmd(&["GET", "alone"]), bulk("yes"));
    assert_eq!(client.cmd(&["DEL", "alone"]), Reply::Integer(1));
    assert_eq!(client.cmd(&["GET", "alone"]), Reply::Nil);
}

#[test]
fn too_few_replicas_in_time_is_an_error_that_counts_them() {
    // Slow failure detection, quick request deadline: a write cannot gather
    // its quorum before the dead replicas are noticed.
    let names = ["a", "b", "c"];
    let mut c = Cluster::start(
        &names,
        &[
            "--set",
            "request_timeout_ms=300",
            "--set",
            "failure_timeout_ms=5000",
        ],
    );
    c.kill(1);
    c.kill(2);
    let reply = c.client(0).cmd(&["SET", "k", "v"]);
    let Reply::Error(msg) = reply else {
        panic!("expected an error, got {reply:?}")
    };
    assert!(
        msg.starts_with("UNAVAILABLE write reached only 1 of the 2 replicas needed"),
        "{msg}"
    );
    let reply = c.client(0).cmd(&["GET", "k"]);
    assert!(
        matches!(&reply, Reply::Error(m) if m.contains("read reached only 1 of the 2")),
        "{reply:?}"
    );
}

/// `ringkv_read_miss_confirmations_total` on node `i`.
fn miss_confirmations(c: &Cluster, i: usize) -> u64 {
    let text = http_get(&c.nodes[i].admin, "/metrics").expect("/metrics answers 200");
    text.lines()
        .find_map(|l| l.strip_prefix("ringkv_read_miss_confirmations_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the miss confirmation counter is exported")
}

#[test]
fn a_miss_is_not_confirmed_by_a_replica_whose_link_broke() {
    // A read whose R answers all miss asks one more replica
    // (`confirm_misses`), but not one whose peer link broke: right after a
    // SIGKILL, long before the failure detector (one minute here) marks the
    // node down, a miss stands on its R answers instead of waiting out the
    // speculation delay for the dead replica.
    let mut c = Cluster::start(&["a", "b", "c"], &["--set", "failure_timeout_ms=60000"]);
    let mut cl = c.client(0);
    // All up: a miss on a and the replica it asked is confirmed by the
    // third (unless the replica asked first was slow enough, on a loaded
    // machine, for the read to ask all three; hence a few tries).
    let before = miss_confirmations(&c, 0);
    let mut n = 0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            n += 1;
            assert_eq!(cl.cmd(&["GET", &format!("absent-up-{n}")]), Reply::Nil);
            miss_confirmations(&c, 0) > before
        }),
        "no miss was confirmed while all three nodes were up"
    );

    c.kill(2);
    // Writes go to c too (at N = 3 every key lives on all three); a write
    // into its dead socket fails and a's link to c stops being reachable.
    let mut i = 0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            i += 1;
            assert_eq!(cl.cmd(&["SET", &format!("k{i}"), "v"]), Reply::ok());
            // Three misses in a row without a confirmation (one alone may
            // have asked c first and then b, leaving nobody to confirm).
            let before = miss_confirmations(&c, 0);
            (0..3).all(|j| cl.cmd(&["GET", &format!("absent-{i}-{j}")]) == Reply::Nil)
                && miss_confirmations(&c, 0) == before
        }),
        "misses were still confirmed through the dead node's broken link"
    );
    // From now on no miss is confirmed, whichever replica each key asks
    // first (before the fix, the keys that asked b first were).
    let before = miss_confirmations(&c, 0);
    for i in 0..20 {
        assert_eq!(cl.cmd(&["GET", &format!("gone-{i}")]), Reply::Nil);
    }
    assert_eq!(miss_confirmations(&c, 0), before);
    assert_eq!(
        c.state_of(0, "c"),
        Some(State::Up),
        "the failure detector has not acted: the link decided"
    );
}
