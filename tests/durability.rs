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
