//! Overload: a node under more than it can take keeps its memory bounded
//! and its connections served in turn.
//!
//! - A client that pipelines commands and never reads the replies is not
//!   buffered without bound: once its replies fill the socket, its
//!   connection stops reading (so the client's writes block), and other
//!   connections are served meanwhile.
//! - A connection with a deep pipeline does not hold up another
//!   connection's single command: the node-wide in-flight permits are
//!   handed out in the order they are asked for, and a connection holds
//!   at most `max_inflight_per_conn` of them.
//!
//! See README, "Overload".

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ringkv::resp::codec::Reply;

/// `n` copies of one command, encoded.
fn pipeline(args: &[&str], n: usize) -> Vec<u8> {
    let mut one = bytes::BytesMut::new();
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    ringkv::resp::codec::encode_command(&args, &mut one);
    one.repeat(n)
}

#[test]
fn a_client_that_never_reads_its_replies_is_not_buffered_and_holds_up_no_one() {
    let c = Cluster::start(&["a"], &["--set", "max_inflight_per_node=4"]);
    let mut other = c.client(0);
    let value = "v".repeat(1024);
    assert_eq!(other.cmd(&["SET", "big", &value]), Reply::ok());

    // Each GET is 26 bytes in and 1 KiB out: the node's replies fill the
    // socket after a few thousand, and then it must stop reading.
    let mut greedy = TcpStream::connect(&c.nodes[0].client).unwrap();
    greedy
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let chunk = pipeline(&["GET", "big"], 10_000);
    const LIMIT: usize = 256 << 20;
    let mut written = 0;
    let blocked = loop {
        match greedy.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break true
            }
            Err(e) => panic!("writing the pipeline failed: {e}"),
        }
        if written > LIMIT {
            break false;
        }
    };
    assert!(
        blocked,
        "the node kept reading {written} bytes of commands whose replies nobody read"
    );
    // What was taken in is the kernel's buffers and a bounded backlog of
    // commands, not the whole pipeline.
    assert!(
        written < 64 << 20,
        "{written} bytes taken in before blocking"
    );

    // Meanwhile every other client is served, writes included.
    for i in 0..50 {
        let key = format!("k{i}");
        assert_eq!(other.cmd(&["SET", &key, "x"]), Reply::ok());
        assert_eq!(other.cmd(&["GET", &key]), bulk("x"));
    }

    // The greedy client reads at last: its replies come, in order, whole.
    greedy
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let reply = format!("$1024\r\n{value}\r\n");
    let mut got = vec![0; reply.len()];
    for _ in 0..1000 {
        greedy.read_exact(&mut got).unwrap();
        assert_eq!(got, reply.as_bytes());
    }
    drop(greedy);
    assert_eq!(other.cmd(&["PING"]), Reply::simple("PONG"));
}

#[test]
fn a_deep_pipeline_does_not_hold_up_another_connections_command() {
    let c = Cluster::start(&["a"], &[]);
    let mut other = c.client(0);
    assert_eq!(other.cmd(&["SET", "k", "v"]), Reply::ok());

    const N: usize = 200_000;
    let mut deep = TcpStream::connect(&c.nodes[0].client).unwrap();
    let mut reader = deep.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let reading = std::thread::spawn({
        let read = read.clone();
        move || {
            // Every reply is "$1\r\nv\r\n": count them by their bytes.
            let mut buf = vec![0; 64 << 10];
            let mut bytes = 0u64;
            while bytes < (N as u64) * 7 {
                let n = reader.read(&mut buf).expect("the deep pipeline's replies");
                assert!(n > 0, "closed after {bytes} bytes");
                bytes += n as u64;
                read.store(bytes / 7, Ordering::Relaxed);
            }
        }
    });
    let writing = std::thread::spawn(move || {
        deep.write_all(&pipeline(&["GET", "k"], N)).unwrap();
        deep
    });

    // Once the deep pipeline is well under way, another connection's
    // command is answered before it ends.
    assert!(
        wait_until(Duration::from_secs(30), || read.load(Ordering::Relaxed)
            >= 5_000),
        "the deep pipeline made no progress"
    );
    assert_eq!(other.cmd(&["GET", "k"]), bulk("v"));
    let done = read.load(Ordering::Relaxed);
    assert!(
        done < N as u64,
        "the single GET waited for the whole pipeline of {N}"
    );
    let _deep = writing.join().unwrap();
    reading.join().unwrap();
    assert_eq!(read.load(Ordering::Relaxed), N as u64);
}
