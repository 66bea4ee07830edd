//! Durability: kill -9 loses no acknowledged write.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ringkv::history::{History, Observed, Op, Outcome};
use ringkv::resp::codec::Reply;

const NAMES: [&str; 3] = ["a", "b", "c"];

/// Writers on several connections; SIGKILL every node mid-load; restart;
/// the history checker (`ringkv::history`) finds every acknowledged write
/// (or a later one of the same key) read back.
fn kill_all_under_load_loses_nothing(fsync: &str) {
    let flags = [
        "--set",
        &format!("fsync={fsync}"),
        // Small segments and thresholds: rotation and compaction happen during the load.
        "--set",
        "log_segment_bytes=16384",
        "--set",
        "compaction_min_bytes=32768",
    ];
    let mut c = Cluster::start(&NAMES, &flags);
    let history: Arc<Mutex<History>> = Arc::default();
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let writers: Vec<_> = (0..6)
        .map(|t| {
            let mut client = c.client(t % 3);
            let (history, acked, stop) = (history.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for n in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("w{t}-{}", n % 100);
                    let op = Op::Set(Bytes::from(key.clone()), Bytes::from(n.to_string()));
                    let start = t0.elapsed().as_nanos() as u64;
                    client.send(&["SET", &key, &n.to_string()]);
                    let reply = client.read();
                    let end = t0.elapsed().as_nanos() as u64;
                    match reply {
                        Some(Reply::Simple(s)) if s == "OK" => {
                            history.lock().unwrap().push(op, start, end, Outcome::Acked);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            // The node died under us: it may have happened.
                            history
                                .lock()
                                .unwrap()
                                .push(op, start, end, Outcome::Unknown);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    // Kill once the log has been compacted at least once under the load.
    assert!(
        wait_until(Duration::from_secs(30), || (0..3)
            .any(|i| c.log(i).contains("compacted the commit log"))),
        "no compaction happened during the load"
    );
    let writes = acked.load(Ordering::Relaxed);
    assert!(writes >= 300, "load did not get going ({writes} writes)");
    for i in 0..NAMES.len() {
        c.kill(i);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let history = history.lock().unwrap().clone();
    for i in 0..NAMES.len() {
        c.spawn(i);
    }
    assert!(wait_until(Duration::from_secs(10), || (0..3)
        .all(|i| c.up_count(i) == Some(3))));
    let mut client = c.client(1);
    let keys = history.keys().len();
    let violations =
        history.check(
            |key| match client.cmd(&["GET", &String::from_utf8_lossy(key)]) {
                Reply::Bulk(v) => Observed::Str(v),
                Reply::Nil => Observed::Absent,
                other => panic!("GET answered {other:?}"),
            },
        );
    for v in &violations {
        eprintln!("{v:?}");
    }
    eprintln!(
        "fsync={fsync}: {} acknowledged writes of {keys} keys checked after kill -9 of every node, {} keys wrong",
        acked.load(Ordering::Relaxed),
        violations.len()
    );
    assert!(violations.is_empty());
    assert!(c.log(0).contains("store rebuilt from the commit log"));
}

#[test]
fn kill_all_loses_nothing_with_fsync_always() {
    kill_all_under_load_loses_nothing("always");
}

#[test]
fn kill_all_loses_nothing_with_fsync_interval() {
    kill_all_under_load_loses_nothing("interval");
}

#[test]
fn kill_all_loses_nothing_with_fsync_never() {
    kill_all_under_load_loses_nothing("never");
}

#[test]
fn a_node_restarted_after_missing_writes_holds_them_again() {
    let mut c = Cluster::start(&NAMES, &[]);
    let mut client = c.client(0);
    for k in 0..50 {
        assert_eq!(
            client.cmd(&["SET", &format!("before{k}"), "1"]),
            Reply::ok()
        );
    }
    c.kill(1);
    assert!(wait_until(Duration::from_secs(5), || c.up_count(0) == Some(2)));
    for k in 0..50 {
        assert_eq!(
            client.cmd(&["SET", &format!("during{k}"), "2"]),
            Reply::ok()
        );
    }
    assert_eq!(client.cmd(&["DEL", "before0"]), Reply::Integer(1));
    c.spawn(1);
    // With three nodes every node holds every key: b must get back all of it,
    // including the delete it missed.
    let holds = |key: &str, want: Option<&str>| match c.client(1).cmd(&["RINGKV", "LOCAL", key]) {
        Reply::Array(items) => match want {
            Some(v) => items[0] == bulk(v),
            None => items[3] == Reply::simple("tombstone"),
        },
        _ => false,
    };
    for k in 1..50 {
        assert!(
            wait_until(Duration::from_secs(5), || holds(
                &format!("before{k}"),
                Some("1")
            )),
            "before{k} from its own log"
        );
        assert!(
            wait_until(Duration::from_secs(5), || holds(
                &format!("during{k}"),
                Some("2")
            )),
            "during{k} by hand-off"
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || holds("before0", None)),
        "the missed delete arrives as a tombstone"
    );
}

/// What node `i` holds of `key` (`RINGKV LOCAL`: value, version, node,
/// liveness and the digest of the whole state).
fn local(c: &Cluster, i: usize, key: &str) -> Reply {
    c.client(i).cmd(&["RINGKV", "LOCAL", key])
}

/// How many compactions node `i` has logged.
fn compactions(c: &Cluster, i: usize) -> usize {
    c.log(i).matches("compacted the commit log").count()
}

/// A snapshot holds rich values whole: a hash of about 2 MiB (past the
/// size a snapshot copies out of its bucket before encoding it), a set and
/// counters, compacted on every node, then every node killed with kill -9
/// and restarted. Each node holds after the restart exactly what it held
/// before (same version, same digest of every field and member).
#[test]
fn a_large_hash_a_set_and_counters_come_back_whole_from_a_snapshot_after_kill_9() {
    let flags = [
        // Every write acknowledged is in all three logs.
        "--set",
        "write_quorum=3",
        "--set",
        "log_segment_bytes=262144",
        "--set",
        "compaction_min_bytes=1048576",
    ];
    let mut c = Cluster::start(&NAMES, &flags);
    let mut client = c.client(0);
    // `value(n)`: 1 KiB, numbered.
    let value = |n: usize| format!("{n:08}{}", "v".repeat(1016));
    const FIELDS: usize = 2000;
    let mut last = vec![0usize; FIELDS];
    let mut n = 0;
    // Writes `count` more field values, members and increments, pipelined.
    let mut write = |client: &mut Client, count: usize, last: &mut Vec<usize>| {
        for _ in 0..count {
            n += 1;
            let f = n % FIELDS;
            last[f] = n;
            client.send(&["HSET", "big", &format!("f{f}"), &value(n)]);
            client.send(&["SADD", "s", &format!("m{}", n % 500)]);
            client.send(&["INCRBY", &format!("c{}", n % 20), "3"]);
        }
        for _ in 0..count * 3 {
            assert!(matches!(client.read(), Some(Reply::Integer(_))));
        }
    };
    write(&mut client, FIELDS, &mut last);
    // Every node compacts again now that the hash is whole.
    let before: Vec<usize> = (0..3).map(|i| compactions(&c, i)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..3).any(|i| compactions(&c, i) == before[i]) {
        assert!(Instant::now() < deadline, "no compaction on every node");
        write(&mut client, 200, &mut last);
    }
    let keys: Vec<String> = ["big", "s"]
        .iter()
        .map(|k| k.to_string())
        .chain((0..20).map(|k| format!("c{k}")))
        .collect();
    let held: Vec<Vec<Reply>> = (0..3)
        .map(|i| keys.iter().map(|k| local(&c, i, k)).collect())
        .collect();
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    assert!(wait_until(Duration::from_secs(20), || (0..3)
        .all(|i| c.up_count(i) == Some(3))));
    for (i, held) in held.iter().enumerate() {
        assert!(c.log(i).contains("store rebuilt from the commit log"));
        let now: Vec<Reply> = keys.iter().map(|k| local(&c, i, k)).collect();
        assert_eq!(
            &now, held,
            "node {i} holds something else after the restart"
        );
    }
    let mut client = c.client(1);
    assert_eq!(client.cmd(&["HLEN", "big"]), Reply::Integer(FIELDS as i64));
    for f in (0..FIELDS).step_by(97) {
        assert_eq!(
            client.cmd(&["HGET", "big", &format!("f{f}")]),
            bulk(&value(last[f]))
        );
    }
    assert_eq!(client.cmd(&["SCARD", "s"]), Reply::Integer(500));
    let total: i64 = (0..20)
        .map(|k| match client.cmd(&["GET", &format!("c{k}")]) {
            Reply::Bulk(v) => String::from_utf8_lossy(&v).parse::<i64>().unwrap(),
            other => panic!("GET answered {other:?}"),
        })
        .sum();
    assert_eq!(total, 3 * n as i64);
}
