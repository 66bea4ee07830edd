//! Soak: 20 client connections send random valid and invalid commands at a
//! 3-node cluster for a fixed count while another thread sends junk to
//! every port of every node. Afterwards no node has died, each node's
//! memory is back near where it started, and keys written before the soak
//! read back intact from every node.
//!
//! Ignored by default (it takes a while); run it with `tests/soak.sh`, or
//! `SOAK_COMMANDS=N cargo test --release --test soak -- --ignored --nocapture`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bulk, wait_until, Client, Cluster};
use rand::{Rng, SeedableRng};
use ringkv::resp::codec::Reply;

const CONNECTIONS: usize = 20;

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    junk: AtomicU64,
}

/// One random command; `true` if it is protocol garbage that closes the
/// connection.
fn random_command(rng: &mut impl Rng, cl: &mut Client) -> bool {
    let key = format!("s{}", rng.gen_range(0..500));
    let value = "v".repeat(rng.gen_range(0..512));
    match rng.gen_range(0..100) {
        0..=29 => cl.send(&["SET", &key, &value]),
        30..=54 => cl.send(&["GET", &key]),
        55..=59 => cl.send(&["DEL", &key]),
        60..=64 => cl.send(&["MGET", &key, "s1", "s2"]),
        65..=67 => cl.send(&["MSET", &key, &value, "s3", "x"]),
        68..=70 => cl.send(&["EXISTS", &key]),
        71..=73 => cl.send(&["PING"]),
        74..=79 => cl.send(&["NOSUCHCMD", &key]),
        80..=84 => cl.send(&["GET"]),
        85..=87 => cl.send(&["SET", &key, &value, "EX", "10"]),
        88..=89 => cl.send(&["SET", &"k".repeat(70 * 1024), "v"]),
        90..=93 => cl.send(&["SELECT", "3"]),
        94..=95 => cl.send(&["DBSIZE"]),
        _ => {
            let junk: [&[u8]; 4] = [
                b"*1\r\n$x\r\n",
                b"*2\r\n:1\r\n",
                b"$-5\r\n",
                b"*99999999999\r\n",
            ];
            cl.send_raw(junk[rng.gen_range(0..junk.len())]);
            return true;
        }
    }
    false
}

fn client_loop(c: &Cluster, seed: u64, count: usize, tally: &Tally) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let node = seed as usize % c.nodes.len();
    let mut cl = c.client(node);
    for _ in 0..count {
        let garbage = random_command(&mut rng, &mut cl);
        match cl.read() {
            Some(Reply::Error(_)) => tally.errors.fetch_add(1, Ordering::Relaxed),
            Some(_) => tally.ok.fetch_add(1, Ordering::Relaxed),
            None => panic!("node closed a connection after a valid command"),
        };
        if garbage {
            assert_eq!(cl.read(), None, "closed after a protocol error");
            cl = c.client(node);
            tally.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends junk to every port of every node until `stop`.
fn junk_loop(ports: Vec<String>, stop: &AtomicBool, tally: &Tally) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    while !stop.load(Ordering::Relaxed) {
        let addr = &ports[rng.gen_range(0..ports.len())];
        let Ok(mut s) = TcpStream::connect(addr) else {
            continue;
        };
        let len = rng.gen_range(1..4096);
        let bytes: Vec<u8> = match rng.gen_range(0..4) {
            0 => (0..len).map(|_| rng.gen()).collect(),
            1 => b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n".to_vec(),
            2 => vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            _ => [&[0u8, 0, 1, 0][..], &[7u8; 32]].concat(),
        };
        let _ignored = s.write_all(&bytes);
        let _ignored = s.shutdown(std::net::Shutdown::Write);
        s.set_read_timeout(Some(Duration::from_millis(200))).ok();
        let mut sink = [0u8; 4096];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        tally.junk.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
#[ignore = "a long soak; run tests/soak.sh"]
fn soak_with_junk_on_every_port() {
    let total: usize = std::env::var("SOAK_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut c = Cluster::start(&["a", "b", "c"], &[]);
    let mut first = c.client(0);
    for i in 0..200 {
        let v = format!("value-{i}-{}", "p".repeat(i));
        assert_eq!(first.cmd(&["SET", &format!("pre{i}"), &v]), Reply::ok());
    }
    let pids: Vec<u32> = (0..3).map(|i| c.pid(i).unwrap()).collect();
    let before: Vec<u64> = pids.iter().map(|&p| rss_kb(p)).collect();
    let ports: Vec<String> = c
        .nodes
        .iter()
        .flat_map(|n| [n.client.clone(), n.peer.clone(), n.admin.clone()])
        .collect();

    let tally = Arc::new(Tally::default());
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        let junk = s.spawn(|| junk_loop(ports, &stop, &tally));
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                let (c, tally) = (&c, &tally);
                s.spawn(move || client_loop(c, i as u64, total / CONNECTIONS, tally))
            })
            .collect();
        for h in clients {
            h.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        junk.join().unwrap();
    });
    let elapsed = started.elapsed();

    for i in 0..3 {
        assert!(c.alive(i), "node {} died", c.nodes[i].name);
        assert_eq!(
            c.up_count(i),
            Some(3),
            "node {} lost members",
            c.nodes[i].name
        );
    }
    for i in 0..3 {
        let mut cl = c.client(i);
        for k in 0..200 {
            let v = format!("value-{k}-{}", "p".repeat(k));
            assert_eq!(cl.cmd(&["GET", &format!("pre{k}")]), bulk(&v));
        }
    }
    // Memory settles once the connections are gone (poll, don't sleep).
    let settled = |i: usize| rss_kb(pids[i]) <= before[i] + 64 * 1024;
    let all_settled = wait_until(Duration::from_secs(10), || (0..3).all(settled));
    let after: Vec<u64> = pids.iter().map(|&p| rss_kb(p)).collect();
    eprintln!(
        "soak: {total} commands on {CONNECTIONS} connections in {elapsed:?}: ok {}, error replies {}, \
         reconnects after protocol errors {}, junk connections {}; RSS KiB before {before:?} after {after:?}",
        tally.ok.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.reconnects.load(Ordering::Relaxed),
        tally.junk.load(Ordering::Relaxed),
    );
    assert!(
        all_settled,
        "RSS did not settle: before {before:?} after {after:?}"
    );
    for i in 0..3 {
        assert!(
            !c.log(i).contains("panicked"),
            "node {} panicked",
            c.nodes[i].name
        );
    }
    c.kill(0);
}
