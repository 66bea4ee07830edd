//! Security and bad input against real node processes: the cluster secret,
//! client AUTH, limits, and robust decoding on both ports.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{bulk, wait_until, Client, Cluster};
use ringkv::encoding::FrameCodec;
use ringkv::membership::State;
use ringkv::message::{Hello, HelloProof, HelloReply, MAGIC, PROTOCOL_VERSION};
use ringkv::resp::codec::Reply;
use tokio_util::codec::{Decoder, Encoder};

const SECRET: &str = "correct horse battery staple";

fn ok() -> Reply {
    Reply::ok()
}

fn is_err(r: &Reply, needle: &str) -> bool {
    matches!(r, Reply::Error(e) if e.contains(needle))
}

fn encode<T: serde::Serialize + ringkv::encoding::Wire>(msg: &T) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameCodec::<T>::new(64 * 1024)
        .encode(msg, &mut out)
        .unwrap();
    out.to_vec()
}

/// Reads one handshake frame of type `T` from a raw peer connection.
fn read_frame<T: serde::de::DeserializeOwned + ringkv::encoding::Wire>(
    s: &mut TcpStream,
) -> Option<T> {
    let mut codec = FrameCodec::<T>::new(64 * 1024);
    let mut buf = BytesMut::new();
    loop {
        if let Some(m) = codec.decode(&mut buf).ok()? {
            return Some(m);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the other side closes `s` within `limit` (reads until EOF).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let until = Instant::now() + limit;
    let mut chunk = [0u8; 4096];
    while Instant::now() < until {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

fn hello(version: u32) -> Hello {
    Hello {
        magic: MAGIC,
        version,
        name: "intruder".into(),
        generation: 1,
        reply_to: "127.0.0.1:9".into(),
    }
}

/// Resident memory of a process, in KiB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Refusal lines about `peer` in a log.
fn log_a_lines(log: &str, peer: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("refused a peer handshake") && l.contains(&format!("peer=\"{peer}\""))
        })
        .count()
}

/// Item 1: a node with a wrong or a missing secret is refused on both
/// sides, with logged (rate-limited) reasons, and never shows up.
#[test]
fn a_node_with_a_wrong_or_missing_secret_never_appears_up_on_either_side() {
    let mut c = Cluster::start(&["a", "b"], &["--cluster-secret", SECRET]);
    let wrong = c.add("wrong", &["--cluster-secret", "not the secret"]);
    let none = c.add("none", &[]);
    // A few failure timeouts, sampling all the while: nobody is ever up
    // across the secret boundary.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        for i in 0..2 {
            for intruder in ["wrong", "none"] {
                assert_ne!(
                    c.state_of(i, intruder),
                    Some(State::Up),
                    "{intruder} up on {i}"
                );
            }
        }
        for i in [wrong, none] {
            assert_eq!(c.up_count(i), Some(1), "{} sees others up", c.nodes[i].name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.up_count(0), Some(2));
    let log_a = c.log(0) + &c.log(1);
    assert!(log_a.contains("wrong cluster secret"), "{log_a}");
    assert!(log_a.contains("peer has no cluster secret"), "{log_a}");
    assert!(c.log(wrong).contains("peer refused our handshake"));
    assert!(c.log(none).contains("peer refused our handshake"));
    // Dozens of attempts in 2.5 s, but only a few lines per peer and 10 s
    // window (per peer, so one intruder cannot hide another).
    for intruder in ["wrong", "none"] {
        let lines = log_a_lines(&c.log(0), intruder);
        assert!(
            (1..=5).contains(&lines),
            "{lines} refusal lines for {intruder}: not rate-limited"
        );
    }
    let attempts: usize = count(&c.log(wrong), "peer refused our handshake");
    assert!(
        attempts <= 10,
        "{attempts} lines on the refused side: not rate-limited"
    );
    // Data still flows inside the cluster.
    let mut a = c.client(0);
    assert_eq!(a.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.client(1).cmd(&["GET", "k"]), bulk("v"));
}

/// Item 1: what a node with a secret sends a listener it connects to
/// holds no trace of the secret, and it refuses an acceptor that cannot
/// prove the secret itself.
#[test]
fn the_secret_never_crosses_the_wire_and_the_acceptor_must_prove_it_too() {
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap().to_string();
    // A one-node cluster gets no seeds from the harness, so it can be
    // seeded with the fake listener alone.
    let c = Cluster::start(&["b"], &["--cluster-secret", SECRET, "--seeds", &fake_addr]);
    let (mut s, _) = fake.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let h: Hello = read_frame(&mut s).expect("a hello");
    assert_eq!(
        (h.magic, h.version, h.name.as_str()),
        (MAGIC, PROTOCOL_VERSION, "b")
    );
    s.write_all(&encode(&HelloReply::Challenge {
        nonce: [7; 32],
        secured: true,
    }))
    .unwrap();
    let p: HelloProof = read_frame(&mut s).expect("a proof");
    assert_ne!(p.nonce, [7; 32]);
    let wire = [encode(&h), encode(&p)].concat();
    assert!(!wire.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    // Accept with a made-up proof: the connector must refuse and send nothing.
    s.write_all(&encode(&HelloReply::Accept {
        name: "fake".into(),
        generation: 1,
        proof: [0; 32],
    }))
    .unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)),
        "connector kept the link"
    );
    let b = c.index("b");
    assert!(wait_until(Duration::from_secs(5), || c
        .log(b)
        .contains("peer failed to prove the cluster secret")));
    assert_ne!(c.state_of(b, "fake"), Some(State::Up));
}

/// Item 4 (peer port): garbage, an oversized length, a truncated frame, a
/// valid hello of the wrong version, a bad proof, and silence are refused
/// without a panic or harm to the data.
#[test]
fn bad_peer_input_is_refused_and_nothing_is_lost() {
    let c = Cluster::start(&["a", "b"], &["--cluster-secret", SECRET]);
    let mut a = c.client(0);
    for k in 0..20 {
        assert_eq!(a.cmd(&["SET", &format!("k{k}"), &format!("v{k}")]), ok());
    }
    let peer = c.nodes[0].peer.clone();
    let connect = || {
        let s = TcpStream::connect(&peer).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        s
    };
    // Silence first, so its 5 s handshake timeout runs alongside the rest.
    let mut silent = connect();
    let silent_since = Instant::now();

    let junk: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0xff; 64],
        &[0, 0, 0, 100, 1, 2, 3], // truncated: 100 promised, 3 sent
        &[0, 0, 0, 5, 0xfc, 0xff, 0xff, 0xff, 0xff], // claims a 4 GiB string
    ];
    for bytes in junk {
        let mut s = connect();
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(
            closed_within(&mut s, Duration::from_secs(6)),
            "{bytes:?} kept open"
        );
    }

    // A well-formed hello of another protocol version: a clean refusal.
    let mut s = connect();
    s.write_all(&encode(&hello(1))).unwrap();
    match read_frame::<HelloReply>(&mut s) {
        Some(HelloReply::Reject { reason }) => {
            assert!(reason.contains("protocol version 1"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The right version but no knowledge of the secret.
    let mut s = connect();
    s.write_all(&encode(&hello(PROTOCOL_VERSION))).unwrap();
    let Some(HelloReply::Negotiated {
        version: PROTOCOL_VERSION,
        nonce,
        secured,
    }) = read_frame(&mut s)
    else {
        panic!("expected a challenge at the newest version")
    };
    assert!(secured);
    let guess = HelloProof {
        nonce,
        secured: true,
        proof: [0x42; 32],
    };
    s.write_all(&encode(&guess)).unwrap();
    match read_frame::<HelloReply>(&mut s) {
        Some(HelloReply::Reject { reason }) => assert_eq!(reason, "wrong cluster secret"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    assert!(
        closed_within(&mut silent, Duration::from_secs(8)),
        "silent peer kept"
    );
    let waited = silent_since.elapsed();
    assert!(waited >= Duration::from_secs(4), "closed after {waited:?}");

    // (Each refusal is logged, but only the first few of a burst.)
    assert!(c.log(0).contains("refused a peer handshake"));
    assert!(!c.log(0).contains("panicked"));
    assert_eq!(c.up_count(0), Some(2));
    assert_eq!(c.up_count(1), Some(2));
    let mut b = c.client(1);
    for k in 0..20 {
        assert_eq!(b.cmd(&["GET", &format!("k{k}")]), bulk(&format!("v{k}")));
    }
    assert_eq!(b.cmd(&["GET", "intruder"]), Reply::Nil);
}

/// Item 2: with `--requirepass`, only AUTH, HELLO, QUIT and RESET run
/// before AUTH (as in Redis 7, PING does not); wrong passwords are refused
/// and logged, rate-limited.
#[test]
fn clients_must_auth_and_failures_are_logged_rate_limited() {
    let c = Cluster::start(&["a"], &["--requirepass", "pw"]);
    let mut cl = c.client(0);
    let noauth = Reply::Error("NOAUTH Authentication required.".into());
    for cmd in [
        &["GET", "k"][..],
        &["SET", "k", "v"],
        &["DBSIZE"],
        &["KEYS", "*"],
        &["INFO"],
        &["PING"],
    ] {
        assert_eq!(cl.cmd(cmd), noauth, "{cmd:?}");
    }
    assert!(is_err(&cl.cmd(&["HELLO", "2"]), "NOAUTH"));
    for _ in 0..50 {
        assert!(is_err(&cl.cmd(&["AUTH", "guess"]), "WRONGPASS"));
    }
    assert!(is_err(&cl.cmd(&["AUTH", "someone", "pw"]), "WRONGPASS"));
    assert_eq!(cl.cmd(&["GET", "k"]), noauth, "still locked after failures");
    assert_eq!(cl.cmd(&["AUTH", "pw"]), ok());
    assert_eq!(cl.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(cl.cmd(&["GET", "k"]), bulk("v"));
    let mut other = c.client(0);
    assert_eq!(other.cmd(&["GET", "k"]), noauth, "AUTH is per connection");
    assert_eq!(other.cmd(&["AUTH", "default", "pw"]), ok());
    assert_eq!(other.cmd(&["GET", "k"]), bulk("v"));
    assert_eq!(other.cmd(&["QUIT"]), ok());
    let lines = count(&c.log(0), "client AUTH failed");
    assert!(
        (1..=6).contains(&lines),
        "{lines} AUTH failure lines for 51 failures"
    );
}

/// Item 3: each limit answers with an error naming it; the connection
/// stays usable (key/value) or is closed with the reason (framing), and
/// other clients are served throughout.
#[test]
fn limits_are_named_in_errors_and_the_node_keeps_serving() {
    let c = Cluster::start(
        &["a"],
        &[
            "--set",
            "max_key_bytes=16",
            "--set",
            "max_value_bytes=64",
            "--set",
            "max_bulk_bytes=128",
            "--set",
            "max_array_len=8",
            "--set",
            "max_request_bytes=1024",
            "--set",
            "max_clients=4",
            "--set",
            "max_inflight_per_node=2",
        ],
    );
    let mut bystander = c.client(0);
    let mut cl = c.client(0);
    let long_key = "k".repeat(17);
    assert!(is_err(
        &cl.cmd(&["SET", &long_key, "v"]),
        "max_key_bytes 16"
    ));
    assert!(is_err(
        &cl.cmd(&["SET", "k", &"v".repeat(65)]),
        "max_value_bytes 64"
    ));
    assert_eq!(cl.cmd(&["SET", "k", "v"]), ok(), "connection still usable");
    assert_eq!(bystander.cmd(&["PING"]), Reply::simple("PONG"));
    drop(cl);

    let closing: [(&[u8], &str); 3] = [
        (b"*2\r\n$3\r\nGET\r\n$200\r\n", "max_bulk_bytes 128"),
        (b"*9\r\n", "max_array_len 8"),
        (&request_of(8, 128), "max_request_bytes 1024"),
    ];
    for (bytes, needle) in closing {
        let mut cl = connect_slot(&c);
        cl.send_raw(bytes);
        let r = cl.read().expect("an error before closing");
        assert!(is_err(&r, needle), "{r:?} should name {needle}");
        assert_eq!(cl.read(), None, "closed after {needle}");
        assert_eq!(bystander.cmd(&["GET", "k"]), bulk("v"));
    }

    // max_clients = 4: the bystander and three more; the fifth is refused.
    let mut held: Vec<Client> = (0..3).map(|_| connect_slot(&c)).collect();
    let mut fifth = c.client(0);
    assert_eq!(
        fifth.read(),
        Some(Reply::Error("ERR max number of clients reached".into()))
    );
    assert_eq!(fifth.read(), None);
    held.pop();
    assert!(wait_until(Duration::from_secs(5), || {
        let mut cl = c.client(0);
        cl.send(&["PING"]);
        cl.read() == Some(Reply::simple("PONG"))
    }));
    drop(held);

    // max_inflight_per_node = 2: pipelines from several clients wait their
    // turn (back-pressure) and all complete.
    let mut pipes: Vec<Client> = (0..3).map(|_| connect_slot(&c)).collect();
    for (n, p) in pipes.iter_mut().enumerate() {
        for i in 0..50 {
            p.send(&["SET", &format!("p{n}-{i}"), "x"]);
        }
    }
    for p in pipes.iter_mut() {
        for _ in 0..50 {
            assert_eq!(p.read(), Some(ok()));
        }
    }
    assert_eq!(bystander.cmd(&["GET", "p2-49"]), bulk("x"));
}

/// A command of `n` bulks of `len` bytes each.
fn request_of(n: usize, len: usize) -> Vec<u8> {
    let mut out = format!("*{n}\r\n").into_bytes();
    for _ in 0..n {
        out.extend_from_slice(format!("${len}\r\n").as_bytes());
        out.extend(std::iter::repeat_n(b'x', len));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A client connection that got a slot (answers PING), retrying while a
/// closed connection's slot is being released.
fn connect_slot(c: &Cluster) -> Client {
    let mut got = None;
    assert!(wait_until(Duration::from_secs(5), || {
        let mut cl = c.client(0);
        cl.send(&["PING"]);
        let ok = cl.read() == Some(Reply::simple("PONG"));
        if ok {
            got = Some(cl);
        }
        ok
    }));
    got.unwrap()
}

/// Item 4 (client port): slowloris clients trickling a huge bulk are
/// closed after `incomplete_request_timeout_ms`, memory stays flat, other
/// clients are served meanwhile, and nothing is stored.
#[test]
fn slowloris_clients_are_closed_with_bounded_memory() {
    let c = Cluster::start(&["a"], &["--set", "incomplete_request_timeout_ms=1500"]);
    let pid = c.pid(0).unwrap();
    let mut bystander = c.client(0);
    assert_eq!(bystander.cmd(&["SET", "keep", "me"]), ok());
    let before = rss_kb(pid);
    let mut slow: Vec<Client> = (0..8).map(|_| c.client(0)).collect();
    for s in &mut slow {
        s.send_raw(b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$16000000\r\n");
    }
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(1200) {
        for s in &mut slow {
            s.send_raw(&[b'x'; 64]);
        }
        assert_eq!(bystander.cmd(&["GET", "keep"]), bulk("me"));
        served += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    for s in &mut slow {
        let r = s.read().expect("an error before closing");
        assert!(is_err(&r, "incomplete_request_timeout_ms 1500"), "{r:?}");
        assert_eq!(s.read(), None);
    }
    assert!(served > 5);
    let after = rss_kb(pid);
    assert!(
        after < before + 20 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    assert_eq!(bystander.cmd(&["GET", "slow"]), Reply::Nil);
    assert_eq!(bystander.cmd(&["GET", "keep"]), bulk("me"));
}
