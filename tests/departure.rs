//! Leave, forget and replace through real processes, under load: no
//! request fails, nothing acknowledged is lost, every key ends with three
//! copies on the nodes that remain, a forgotten data directory coming back
//! is refused (and brings back no delete), and a new empty node under the
//! dead one's name is refilled.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ringkv::membership::State;
use ringkv::resp::codec::Reply;

const NAMES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

fn ringkv(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Live keys held by the nodes at `idx`.
fn copies(c: &Cluster, idx: &[usize]) -> u64 {
    idx.iter().map(|i| c.status(*i).map_or(0, |s| s.keys)).sum()
}

/// A load through `through`: writes of rising values to 50 keys and reads,
/// counting failures and remembering the last value acknowledged per key.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    acked: Arc<Mutex<HashMap<String, u64>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(c: &Cluster, through: &[usize]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let threads = through
            .iter()
            .enumerate()
            .map(|(t, &i)| {
                let mut client = c.client(i);
                let (stop, failed, done, acked) =
                    (stop.clone(), failed.clone(), done.clone(), acked.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        // Each thread owns its keys, so its values rise.
                        let key = format!("load{t}-{}", n % 25);
                        let value = n.to_string();
                        match client.cmd(&["SET", &key, &value]) {
                            r if r == Reply::ok() => {
                                acked.lock().unwrap().insert(key.clone(), n);
                            }
                            other => {
                                eprintln!("SET {key}: {other:?}");
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if let Reply::Error(e) = client.cmd(&["GET", &key]) {
                            eprintln!("GET {key}: {e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        done.fetch_add(2, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            failed,
            done,
            acked,
            threads,
        }
    }

    /// Stops the load; returns (requests, failed, last acknowledged value
    /// per key).
    fn finish(self) -> (u64, u64, HashMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        (
            self.done.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            acked,
        )
    }
}

/// Every acknowledged value reads back (or a newer one) through `i`.
fn all_read_back(c: &Cluster, i: usize, acked: &HashMap<String, u64>) {
    let mut client = c.client(i);
    for (key, n) in acked {
        let got = match client.cmd(&["GET", key]) {
            Reply::Bulk(b) => String::from_utf8_lossy(&b).parse::<u64>().unwrap(),
            other => panic!("GET {key} through {}: {other:?}", c.nodes[i].name),
        };
        assert!(got >= *n, "{key}: {got} after {n} was acknowledged");
    }
}

#[test]
fn leave_then_forget_then_replace_under_load() {
    let mut c = Cluster::start(&NAMES, &[]);
    let keys = 400u64;
    {
        let mut client = c.client(0);
        for k in 0..keys {
            assert_eq!(
                client.cmd(&["SET", &format!("k{k}"), &format!("v{k}")]),
                Reply::ok()
            );
        }
    }
    let all: Vec<usize> = (0..5).collect();
    assert!(wait_until(Duration::from_secs(20), || copies(&c, &all) == 3 * keys));

    // n5 leaves while n1 and n2 take a load.
    let load = Load::start(&c, &[0, 1]);
    let leaver = c.index("n5");
    let (ok, out) = ringkv(&["leave", "--admin", &c.nodes[leaver].admin]);
    assert!(ok, "{out}");
    assert!(out.contains("n5 is leaving"), "{out}");
    assert!(out.contains("n5 left: "), "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || !c.alive(leaver)),
        "n5 did not stop after leaving"
    );
    let four: Vec<usize> = (0..4).collect();
    for &i in &four {
        let status = c.status(i).unwrap();
        let n5 = status.nodes.iter().find(|n| n.name == "n5").unwrap();
        assert_eq!(n5.state, State::Left, "as {} sees it", c.nodes[i].name);
    }
    let (requests, failed, acked) = load.finish();
    assert_eq!(
        failed, 0,
        "{failed} of {requests} requests failed during leave"
    );
    assert!(requests > 0);
    let loaded = acked.len() as u64;
    assert!(
        wait_until(Duration::from_secs(20), || copies(&c, &four)
            == 3 * (keys + loaded)),
        "{} copies of {} keys on the four",
        copies(&c, &four),
        keys + loaded
    );
    for &i in &four {
        all_read_back(&c, i, &acked);
    }
    assert!(c.log(leaver).contains("left the cluster"));
    // Started again on the data directory that left (as a supervisor
    // would restart it), it refuses to run rather than serve alone.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args([
            "node",
            "--name",
            "n5",
            "--client",
            "127.0.0.1:0",
            "--peer",
            "127.0.0.1:0",
        ])
        .args(["--admin", "127.0.0.1:0", "--data-dir"])
        .arg(&c.nodes[leaver].data_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{err}");
    assert!(
        err.contains("this data directory left the cluster; to bring n5 back, start it with an empty data directory"),
        "{err}"
    );

    // n4 dies for good and is forgotten, under load.
    let dead = c.index("n4");
    c.kill(dead);
    assert!(wait_until(Duration::from_secs(5), || c.state_of(0, "n4")
        == Some(State::Down)));
    let (ok, out) = ringkv(&["forget", "n1", "--admin", &c.nodes[1].admin]);
    assert!(
        !ok && out.contains("n1 is up: forget is for a node that is down for good"),
        "{out}"
    );
    let load = Load::start(&c, &[0, 1]);
    let (ok, out) = ringkv(&["forget", "n4", "--admin", &c.nodes[0].admin]);
    assert!(ok, "{out}");
    assert!(out.contains("forgot n4 (data directory "), "{out}");
    let three: Vec<usize> = (0..3).collect();
    let (requests, failed, acked2) = load.finish();
    assert_eq!(
        failed, 0,
        "{failed} of {requests} requests failed during forget"
    );
    let loaded: std::collections::HashSet<&String> = acked.keys().chain(acked2.keys()).collect();
    let total = keys + loaded.len() as u64;
    assert!(
        wait_until(Duration::from_secs(20), || copies(&c, &three) == 3 * total),
        "{} copies of {total} keys on the three",
        copies(&c, &three)
    );
    for &i in &three {
        all_read_back(&c, i, &acked2);
        assert_eq!(
            c.status(i)
                .unwrap()
                .nodes
                .iter()
                .find(|n| n.name == "n4")
                .map(|n| n.state),
            Some(State::Left)
        );
    }
    // A forgotten node cannot be forgotten again, nor an unknown one.
    let (ok, out) = ringkv(&["forget", "nobody", "--admin", &c.nodes[0].admin]);
    assert!(
        !ok && out.contains("no node named nobody is known here"),
        "{out}"
    );

    // A key deleted after the forget stays deleted when n4's old data
    // comes back: n4 is refused, and never up.
    assert_eq!(c.client(0).cmd(&["DEL", "k1"]), Reply::Integer(1));
    c.spawn(dead);
    assert!(
        wait_until(Duration::from_secs(10), || c
            .log(0)
            .contains("n4 refused: its data directory")),
        "{}",
        c.log(0)
    );
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < deadline {
        assert_ne!(c.state_of(0, "n4"), Some(State::Up));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.client(1).cmd(&["GET", "k1"]), Reply::Nil);
    c.kill(dead);

    // Replace: an empty data directory under the name n4 joins and is
    // refilled with its ranges.
    std::fs::remove_dir_all(&c.nodes[dead].data_dir).unwrap();
    c.spawn(dead);
    let four: Vec<usize> = (0..4).collect();
    for &i in &four {
        assert!(wait_until(Duration::from_secs(10), || c.up_count(i) == Some(4)));
    }
    let live = total - 1; // k1 was deleted
                          // Three copies of every key among the four hold from the start (the
                          // survivors keep their copies until the replacement has them), so
                          // the replacement's own share is what shows it was refilled.
    let n4_holds = || c.status(dead).map_or(0, |s| s.keys);
    assert!(
        wait_until(Duration::from_secs(20), || n4_holds() > live / 3
            && copies(&c, &four) == 3 * live),
        "{} copies of {live} keys on the four, the replacement holding {}",
        copies(&c, &four),
        n4_holds()
    );
    assert_eq!(c.client(dead).cmd(&["GET", "k1"]), Reply::Nil);
    assert_eq!(c.client(dead).cmd(&["GET", "k2"]), bulk("v2"));
}
