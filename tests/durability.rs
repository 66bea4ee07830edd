//! Durability: kill -9 loses no acknowledged write.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ringkv::resp::codec::Reply;

const NAMES: [&str; 3] = ["a", "b", "c"];

/// Writers on several connections; SIGKILL every node mid-load; restart;
/// every acknowledged write (or a later one of the same key) reads back.
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
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|t| {
            let mut client = c.client(t % 3);
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for n in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("w{t}-{}", n % 100);
                    client.send(&["SET", &key, &n.to_string()]);
                    match client.read() {
                        Some(Reply::Simple(s)) if s == "OK" => {
                            acked.lock().unwrap().insert(key, n);
                        }
                        _ => return, // the node died under us
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
    let writes: usize = acked.lock().unwrap().len();
    assert!(writes >= 300, "load did not get going ({writes} keys)");
    for i in 0..NAMES.len() {
        c.kill(i);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    for i in 0..NAMES.len() {
        c.spawn(i);
    }
    assert!(wait_until(Duration::from_secs(10), || (0..3)
        .all(|i| c.up_count(i) == Some(3))));
    let mut client = c.client(1);
    let mut lost = 0;
    for (key, n) in &acked {
        match client.cmd(&["GET", key]) {
            Reply::Bulk(v) if String::from_utf8_lossy(&v).parse::<u64>().unwrap() >= *n => {}
            other => {
                lost += 1;
                eprintln!("{key}: acked {n}, read {other:?}");
            }
        }
    }
    eprintln!(
        "fsync={fsync}: {} acknowledged keys checked after kill -9 of every node, {lost} lost",
        acked.len()
    );
    assert_eq!(lost, 0);
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
