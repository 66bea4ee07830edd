//! A Jepsen-style test over Docker: five containers (`docker/compose.yml`),
//! clients writing unique values, deleting and reading a handful of keys
//! through every node (so writes conflict), and a nemesis that cycles
//! through iptables partitions into random halves, the isolation of one
//! node, a bridge (one node sees both sides), `docker kill` and start, and
//! `docker pause`. Then the last partition is healed, every key is read
//! through every node until they all agree, and the history checker
//! (`ringkv::history`, the one every Jepsen-style test uses) judges the
//! final state: nothing acknowledged lost beyond last-writer-wins order,
//! nothing invented.
//!
//! Needs Docker and root (iptables inside the containers' namespaces), so
//! it is ignored by `cargo test` and run by `.ci/run` after the Docker
//! end-to-end test: `cargo test --test jepsen_docker -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Client;
use rand::seq::SliceRandom;
use rand::Rng;
use ringkv::history::{History, Observed, Op, Outcome};
use ringkv::resp::codec::Reply;

const NODES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];
const KEYS: usize = 8;
const TIMEOUT: Duration = Duration::from_millis(2500);

fn client_addr(i: usize) -> String {
    format!("127.0.0.1:{}", 7001 + i)
}

/// Runs `docker/cluster.sh ARGS`; panics with its output if it fails.
fn cluster(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/cluster.sh");
    let out = Command::new(script)
        .args(args)
        .output()
        .expect("run cluster.sh");
    assert!(
        out.status.success(),
        "cluster.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Takes the cluster down when the test ends, however it ends.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/cluster.sh");
        match Command::new(script).arg("down").output() {
            Ok(out) if out.status.success() => {}
            other => eprintln!("cluster.sh down failed: {other:?}"),
        }
    }
}

/// Nanoseconds since `zero`: the history's clock.
fn at(zero: Instant) -> u64 {
    zero.elapsed().as_nanos() as u64
}

/// One client: random SET (a unique value), DEL and GET of the keys
/// through node `i` until `stop`, each recorded with its interval.
fn client(i: usize, zero: Instant, stop: Arc<AtomicBool>, history: Arc<Mutex<History>>) {
    let mut rng = rand::thread_rng();
    let mut conn: Option<Client> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = conn.as_mut() else {
            conn = Client::try_connect(&client_addr(i), TIMEOUT);
            if conn.is_none() {
                // The node is down or paused: try again shortly.
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        };
        let key = format!("k{}", rng.gen_range(0..KEYS));
        let roll = rng.gen_range(0..100);
        let (op, args): (Option<Op>, Vec<String>) = if roll < 60 {
            seq += 1;
            let value = format!("c{i}-{seq}");
            let op = Op::Set(Bytes::from(key.clone()), Bytes::from(value.clone()));
            (Some(op), vec!["SET".into(), key, value])
        } else if roll < 75 {
            (
                Some(Op::Del(Bytes::from(key.clone()))),
                vec!["DEL".into(), key],
            )
        } else {
            (None, vec!["GET".into(), key])
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = at(zero);
        let reply = c.try_cmd(&args);
        let end = at(zero);
        let outcome = match &reply {
            Some(Reply::Simple(_) | Reply::Integer(_)) => Outcome::Acked,
            // An error after the write may have reached some replicas, a
            // timeout, a broken connection: it may or may not have happened.
            _ => Outcome::Unknown,
        };
        if reply.is_none() {
            conn = None;
        }
        if let Some(op) = op {
            history.lock().unwrap().push(op, start, end, outcome);
        }
    }
}

/// What every node reads for every key, if every node answered.
fn read_all() -> Option<Vec<BTreeMap<String, Option<Bytes>>>> {
    (0..NODES.len())
        .map(|i| {
            let mut c = Client::try_connect(&client_addr(i), TIMEOUT)?;
            (0..KEYS)
                .map(|k| {
                    let key = format!("k{k}");
                    match c.try_cmd(&["GET", &key])? {
                        Reply::Bulk(b) => Some((key, Some(b))),
                        Reply::Nil => Some((key, None)),
                        _ => None,
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
#[ignore = "needs Docker and root; run by .ci/run"]
fn partitions_kills_and_pauses_lose_nothing_acknowledged() {
    cluster(&["up"]);
    let _down = Down;
    let zero = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(History::new()));
    let clients: Vec<_> = (0..NODES.len())
        .map(|i| {
            let (stop, history) = (stop.clone(), history.clone());
            std::thread::spawn(move || client(i, zero, stop, history))
        })
        .collect();
    let mut rng = rand::thread_rng();
    let hold = Duration::from_secs(3);
    let rest = Duration::from_secs(2);
    let faults = ["halves", "isolate", "bridge", "kill", "pause", "halves"];
    for (round, fault) in faults.iter().enumerate() {
        let mut nodes = NODES.to_vec();
        nodes.shuffle(&mut rng);
        let what = match *fault {
            "halves" => {
                let (a, b) = nodes.split_at(2);
                cluster(&["partition", &a.join(","), &b.join(",")]);
                format!("partition {} | {}", a.join(","), b.join(","))
            }
            "isolate" => {
                cluster(&["partition", nodes[0], &nodes[1..].join(",")]);
                format!("isolate {}", nodes[0])
            }
            "bridge" => {
                let (a, b) = (nodes[1..3].join(","), nodes[3..].join(","));
                cluster(&["partition", &a, &b]);
                format!("bridge {} between {a} and {b}", nodes[0])
            }
            "kill" => {
                cluster(&["kill", nodes[0]]);
                format!("docker kill {}", nodes[0])
            }
            _ => {
                cluster(&["pause", nodes[0]]);
                format!("docker pause {}", nodes[0])
            }
        };
        eprintln!("{:>6.1} s  nemesis: {what}", zero.elapsed().as_secs_f64());
        // The faults are timed on purpose: each holds while clients run.
        std::thread::sleep(hold);
        if round + 1 == faults.len() {
            break;
        }
        match *fault {
            "kill" => cluster(&["start", nodes[0]]),
            "pause" => cluster(&["unpause", nodes[0]]),
            _ => cluster(&["heal"]),
        }
        eprintln!("{:>6.1} s  nemesis: healed", zero.elapsed().as_secs_f64());
        std::thread::sleep(rest);
    }
    // The last partition is still in place: the clients stop, it is
    // healed, and the time to converge runs from the removal of its rules.
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    cluster(&["heal"]);
    let healed = Instant::now();
    let deadline = healed + Duration::from_secs(60);
    let agreed = loop {
        if let Some(views) = read_all() {
            if views.windows(2).all(|w| w[0] == w[1]) {
                break Some(views.into_iter().next().expect("five views"));
            }
        }
        if Instant::now() > deadline {
            break None;
        }
    };
    let converged = healed.elapsed();
    let agreed = agreed.expect("the nodes did not agree within 60 s of the heal");
    let history = history.lock().unwrap();
    let violations = history.check(|key| {
        let key = String::from_utf8_lossy(key).into_owned();
        match agreed.get(&key).cloned().flatten() {
            Some(v) => Observed::Str(v),
            None => Observed::Absent,
        }
    });
    let ops = history.len();
    println!(
        "jepsen over docker: {ops} operations (SET and DEL), {} acknowledged, {} indeterminate; \
         {} keys lost or invented; converged {} ms after the last iptables rule was removed",
        history.acked(),
        ops - history.acked(),
        violations.len(),
        converged.as_millis()
    );
    assert!(ops > 100, "only {ops} operations");
    assert!(violations.is_empty(), "{violations:#?}");
}
