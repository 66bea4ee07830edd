//! The binary's outside interface: `up`, config errors, signals, RESP edge cases.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ringkv::resp::codec::Reply;

fn exe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringkv"))
}

#[test]
fn a_bad_setting_is_one_line_naming_the_key_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = exe()
        .args(["node", "--set", "vnodes=many", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "ringkv: config: vnodes: `many` is not an integer"
    );
    let out = exe()
        .env("RINGKV_WRITE_QUORUM", "9")
        .args(["node", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("write_quorum: 9 exceeds replication 3"));
}

#[test]
fn sigterm_stops_a_node_cleanly_within_five_seconds() {
    let c = Cluster::start(&["solo"], &[]);
    let mut c = c;
    let child = c.nodes[0].child.take().unwrap();
    let pid = child.id();
    let t = Instant::now();
    // SAFETY: signalling a child process we spawned.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success(), "{status}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(c.log(0).contains("node stopped"));
}

#[test]
fn up_writes_cluster_json_prints_ready_and_stops_its_nodes() {
    let dir = tempfile::tempdir().unwrap();
    // Find a base port whose nine ports are all free.
    let base = (0..50)
        .map(|_| 10_000 + (free_port() % 20_000))
        .find(|b| {
            [1, 2, 3, 101, 102, 103, 201, 202, 203]
                .iter()
                .all(|o| std::net::TcpListener::bind(("127.0.0.1", b + o)).is_ok())
        })
        .expect("a free port range");
    let mut up = exe()
        .args([
            "up",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
            "--data-dir",
        ])
        .arg(dir.path())
        .args([
            "--",
            "--set",
            "heartbeat_interval_ms=50",
            "--set",
            "failure_timeout_ms=300",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").unwrap();
    assert!(first.starts_with("ready"), "{first}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cluster.json")).unwrap())
            .unwrap();
    let nodes = json["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0]["name"], "n1");
    assert_eq!(nodes[0]["client"], format!("127.0.0.1:{}", base + 1));
    assert_eq!(nodes[2]["admin"], format!("127.0.0.1:{}", base + 203));
    assert_eq!(nodes[1]["token"].as_str().unwrap().len(), 40);
    let pids: Vec<i32> = nodes
        .iter()
        .map(|n| n["pid"].as_i64().unwrap() as i32)
        .collect();
    let mut client = Client::connect(&format!("127.0.0.1:{}", base + 2));
    assert_eq!(client.cmd(&["SET", "k", "v"]), Reply::ok());
    // SAFETY: signalling the `up` process we spawned.
    unsafe { libc::kill(up.id() as i32, libc::SIGINT) };
    let status = up.wait().unwrap();
    assert!(status.success(), "{status:?}");
    for pid in pids {
        // SAFETY: signal 0 only checks whether the process exists.
        assert!(
            wait_until(Duration::from_secs(2), || unsafe { libc::kill(pid, 0) }
                != 0),
            "node {pid} still runs"
        );
    }
    // Run again on the same dir: the nodes come back (data durability is the log's job).
    assert!(dir.path().join("n1").join("generation").exists());
}

#[test]
fn unknown_and_malformed_commands_get_errors_and_the_connection_stays_usable() {
    let c = Cluster::start(&["solo"], &[]);
    let mut client = c.client(0);
    let reply = client.cmd(&["FROB", "x"]);
    assert!(
        matches!(&reply, Reply::Error(m) if m.starts_with("ERR unknown command 'FROB'")),
        "{reply:?}"
    );
    let reply = client.cmd(&["GET"]);
    assert!(
        matches!(&reply, Reply::Error(m) if m.contains("wrong number of arguments for 'get'")),
        "{reply:?}"
    );
    let reply = client.cmd(&["SET", "k", "v", "NX", "XX"]);
    assert_eq!(reply, Reply::err("syntax error"));
    assert_eq!(client.cmd(&["PING"]), Reply::simple("PONG"));
    // Inline commands work too (redis-cli and telnet users).
    client.send_raw(b"PING hello\r\n");
    assert_eq!(client.read(), Some(bulk("hello")));
    // A broken frame gets an error and the connection closes, as in Redis.
    client.send_raw(b"*1\r\n$abc\r\n");
    assert!(matches!(client.read(), Some(Reply::Error(m)) if m.contains("Protocol error")));
    assert_eq!(client.read(), None);
    // The node still serves everyone else.
    assert_eq!(c.client(0).cmd(&["PING"]), Reply::simple("PONG"));
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let c = Cluster::start(&["a", "b", "c"], &[]);
    let mut client = c.client(0);
    for k in 0..200 {
        client.send(&["SET", &format!("p{k}"), &k.to_string()]);
        client.send(&["GET", &format!("p{k}")]);
    }
    for k in 0..200 {
        assert_eq!(client.read(), Some(Reply::ok()));
        assert_eq!(client.read(), Some(bulk(&k.to_string())));
    }
    let mut other = c.client(1);
    assert_eq!(
        other.cmd(&["MGET", "p1", "nope", "p2"]),
        Reply::Array(vec![bulk("1"), Reply::Nil, bulk("2")])
    );
    assert_eq!(
        other.cmd(&["EXISTS", "p1", "p2", "nope"]),
        Reply::Integer(2)
    );
    assert_eq!(other.cmd(&["DEL", "p1", "nope"]), Reply::Integer(1));
    assert_eq!(other.cmd(&["EXISTS", "p1"]), Reply::Integer(0));
    assert_eq!(other.cmd(&["MSET", "x", "1", "y", "2"]), Reply::ok());
    assert_eq!(strings(&other.cmd(&["KEYS", "[xy]"])), vec!["x", "y"]);
    let Reply::Array(scan) = other.cmd(&["SCAN", "0", "MATCH", "p1*", "COUNT", "1000"]) else {
        panic!()
    };
    assert_eq!(scan[0], bulk("0"));
    assert_eq!(
        strings(&scan[1]).len(),
        110,
        "p1, p10..p19, p100..p199 minus the deleted p1"
    );
}

/// A node alone answers a GET at once, without a request future: still
/// after the writes sent before it on the connection, in a pipeline and
/// inside MULTI/EXEC, as Redis runs them one after the other.
#[test]
fn on_a_lone_node_pipelined_reads_see_the_writes_before_them() {
    let c = Cluster::start(&["solo"], &[]);
    reads_see_the_writes_before_them(&c);
}

/// The same with R = 1 in a cluster: a GET is answered at once by a node
/// that is the key's first replica, and through the others otherwise.
#[test]
fn with_r_1_pipelined_reads_see_the_writes_before_them() {
    let c = Cluster::start(&["a", "b", "c"], &["--set", "read_quorum=1"]);
    reads_see_the_writes_before_them(&c);
}

fn reads_see_the_writes_before_them(c: &Cluster) {
    let mut client = c.client(0);
    for k in 0..100 {
        let key = format!("p{}", k % 7);
        client.send(&["SET", &key, &k.to_string()]);
        client.send(&["GET", &key]);
        client.send(&["INCR", "n"]);
        client.send(&["GET", "n"]);
        client.send(&["APPEND", &key, "x"]);
        client.send(&["GET", &key]);
        client.send(&["DEL", &key]);
        client.send(&["GET", &key]);
    }
    for k in 0..100 {
        assert_eq!(client.read(), Some(Reply::ok()));
        assert_eq!(client.read(), Some(bulk(&k.to_string())));
        assert_eq!(client.read(), Some(Reply::Integer(k + 1)));
        assert_eq!(client.read(), Some(bulk(&(k + 1).to_string())));
        let appended = format!("{k}x");
        assert_eq!(client.read(), Some(Reply::Integer(appended.len() as i64)));
        assert_eq!(client.read(), Some(bulk(&appended)));
        assert_eq!(client.read(), Some(Reply::Integer(1)));
        assert_eq!(client.read(), Some(Reply::Nil));
    }
    for words in [
        &["MULTI"][..],
        &["SET", "t", "1"],
        &["GET", "t"],
        &["SET", "t", "2"],
        &["GET", "t"],
        &["EXEC"],
        &["GET", "t"],
    ] {
        client.send(words);
    }
    assert_eq!(client.read(), Some(Reply::ok()));
    for _ in 0..4 {
        assert_eq!(client.read(), Some(Reply::simple("QUEUED")));
    }
    assert_eq!(
        client.read(),
        Some(Reply::Array(vec![
            Reply::ok(),
            bulk("1"),
            Reply::ok(),
            bulk("2")
        ]))
    );
    assert_eq!(client.read(), Some(bulk("2")));
    writes_start_in_order_among_answers_known_at_once(&mut client);
}

/// A write is stamped when it starts, so the writes of one batch must start
/// in the order sent, also when an answer known at once (MULTI's OK, a
/// QUEUED, a read answered during dispatch) comes after them: once, a DEL
/// started after the SET behind it, won by its later stamp, and the SET
/// was lost.
fn writes_start_in_order_among_answers_known_at_once(client: &mut Client) {
    for k in 0..20 {
        let key = format!("w{k}");
        // One batch, so that the node starts it all before polling any.
        let mut batch = bytes::BytesMut::new();
        for words in [
            &["DEL", &key][..],
            &["SET", &key, "v"],
            &["MULTI"],
            &["EXEC"],
            &["GET", &key],
        ] {
            let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
            ringkv::resp::codec::encode_command(&words, &mut batch);
        }
        client.send_raw(&batch);
        assert_eq!(client.read(), Some(Reply::Integer(0)), "DEL {key}");
        assert_eq!(client.read(), Some(Reply::ok()));
        assert_eq!(client.read(), Some(Reply::ok()));
        assert_eq!(client.read(), Some(Reply::Array(vec![])));
        assert_eq!(client.read(), Some(bulk("v")), "the SET after DEL {key}");
    }
}

#[test]
fn redis_cli_handshake_commands_work() {
    let c = Cluster::start(&["solo"], &[]);
    let mut client = c.client(0);
    assert_eq!(client.cmd(&["SELECT", "0"]), Reply::ok());
    assert!(matches!(client.cmd(&["SELECT", "1"]), Reply::Error(_)));
    assert_eq!(client.cmd(&["CLIENT", "SETNAME", "t"]), Reply::ok());
    assert_eq!(
        client.cmd(&["CLIENT", "SETINFO", "lib-name", "x"]),
        Reply::ok()
    );
    assert_eq!(client.cmd(&["CLIENT", "GETNAME"]), bulk("t"));
    assert_eq!(
        strings(&client.cmd(&["CONFIG", "GET", "appendonly"])),
        vec!["appendonly", "yes"]
    );
    assert!(
        matches!(client.cmd(&["INFO"]), Reply::Bulk(b) if String::from_utf8_lossy(&b).contains("# Ringkv"))
    );
    assert_eq!(client.cmd(&["ECHO", "hi"]), bulk("hi"));
    assert_eq!(
        client.cmd(&["RINGKV", "QUORUM"]),
        Reply::Array(vec![Reply::Integer(2), Reply::Integer(2), bulk("sloppy")])
    );
    assert_eq!(client.cmd(&["RINGKV", "QUORUM", "1", "3"]), Reply::ok());
    assert_eq!(
        client.cmd(&["RINGKV", "QUORUM"]),
        Reply::Array(vec![Reply::Integer(1), Reply::Integer(3), bulk("sloppy")])
    );
    assert!(matches!(
        client.cmd(&["RINGKV", "QUORUM", "0", "9"]),
        Reply::Error(_)
    ));
    assert_eq!(client.cmd(&["QUIT"]), Reply::ok());
    assert_eq!(client.read(), None);
}

#[test]
fn requirepass_gates_commands_until_auth() {
    let c = Cluster::start(&["solo"], &["--requirepass", "s3cret"]);
    let mut client = c.client(0);
    // As in Redis 7: only AUTH, HELLO, QUIT and RESET before authenticating.
    let noauth = Reply::Error("NOAUTH Authentication required.".into());
    assert_eq!(client.cmd(&["PING"]), noauth);
    assert_eq!(client.cmd(&["GET", "k"]), noauth);
    assert!(
        matches!(client.cmd(&["HELLO", "3"]), Reply::Error(m) if m.starts_with("NOAUTH HELLO must be called"))
    );
    assert!(matches!(client.cmd(&["AUTH", "nope"]), Reply::Error(m) if m.starts_with("WRONGPASS")));
    assert_eq!(client.cmd(&["AUTH", "s3cret"]), Reply::ok());
    assert_eq!(client.cmd(&["GET", "k"]), Reply::Nil);
}
