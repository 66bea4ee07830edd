//! Failover under load: SIGKILL one node of five (default timings:
//! heartbeat 200 ms, failure timeout 1000 ms) while clients read and write
//! through the four survivors; report the time until every survivor marks
//! it down, and how many requests failed or were slow meanwhile.
//!
//!     cargo bench --bench failover

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ringkv::membership::State;
use ringkv::resp::codec::Reply;

fn main() {
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let mut c = Cluster::start(
        &names,
        &[
            "--set",
            "heartbeat_interval_ms=200",
            "--set",
            "failure_timeout_ms=1000",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    // (time since start, latency, ok) of every request.
    let samples: Arc<Mutex<Vec<(Duration, Duration, bool)>>> = Arc::default();
    let t0 = Instant::now();
    let workers: Vec<_> = [0usize, 2, 3, 4]
        .into_iter()
        .flat_map(|i| [i, i])
        .enumerate()
        .map(|(w, i)| {
            let mut client = c.client(i);
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut local = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}-{}", n % 1000);
                    let t = Instant::now();
                    let ok = if n % 2 == 0 {
                        client.cmd(&["SET", &key, "value"]) == Reply::ok()
                    } else {
                        !matches!(client.cmd(&["GET", &key]), Reply::Error(_))
                    };
                    local.push((t0.elapsed(), t.elapsed(), ok));
                    n += 1;
                }
                samples.lock().unwrap().extend(local);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let killed_at = t0.elapsed();
    let kill = Instant::now();
    c.kill(1);
    let survivors = [0usize, 2, 3, 4];
    let mut marked = Vec::new();
    for &i in &survivors {
        wait_until(Duration::from_secs(10), || {
            c.state_of(i, "n2") == Some(State::Down)
        });
        marked.push(kill.elapsed());
    }
    let detected = kill.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let samples = samples.lock().unwrap();
    let window = |from: Duration, to: Duration| {
        samples
            .iter()
            .filter(move |(at, _, _)| *at >= from && *at < to)
    };
    let during: Vec<_> = window(killed_at, killed_at + detected).collect();
    let failed = samples.iter().filter(|(_, _, ok)| !ok).count();
    let mut lat: Vec<Duration> = during.iter().map(|(_, l, _)| *l).collect();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!("failover (5 nodes, heartbeat 200 ms, failure timeout 1000 ms, 8 client connections on the 4 survivors)");
    println!(
        "  every survivor marked n2 down after {:.0} ms (each: {:?} ms)",
        detected.as_secs_f64() * 1e3,
        marked.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    println!("  requests: {} in all, {} failed", samples.len(), failed);
    println!(
        "  during detection: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        lat.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}
