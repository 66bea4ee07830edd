//! `ringkv status --json` and `--watch` against a live cluster.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, Cluster};
use ringkv::admin::Status;

fn ringkv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringkv"))
}

#[test]
fn status_json_is_one_parsable_document() {
    let c = Cluster::start(&["s1", "s2"], &[]);
    let status = || {
        let out = ringkv()
            .args(["status", "--json", "--admin", &c.nodes[0].admin])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let s: Status = serde_json::from_str(&text).unwrap();
        assert_eq!(s.name, "s1");
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.heartbeat_interval_ms, common::HEARTBEAT_MS);
        s
    };
    // Suspicion is about heartbeats late by two intervals, which a loaded
    // machine can make happen right after start: it clears.
    assert!(wait_until(Duration::from_secs(5), || status()
        .nodes
        .iter()
        .all(|n| !n.suspect)));
}

#[test]
fn status_watch_redraws_and_marks_changes() {
    let mut c = Cluster::start(&["w1", "w2", "w3"], &[]);
    let mut child = ringkv()
        .args(["status", "--watch", "--admin", &c.nodes[0].admin])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = out.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let frames = |o: &Arc<Mutex<String>>| o.lock().unwrap().matches("\x1b[2J").count();
    // It redraws: at least three frames in well under three seconds.
    assert!(wait_until(Duration::from_secs(3), || frames(&out) >= 3));
    let first = out.lock().unwrap().clone();
    assert!(first.contains("w3") && first.contains("UP"), "{first}");
    c.kill(2);
    let marked = |o: &Arc<Mutex<String>>| {
        let text = o.lock().unwrap();
        let last = text.rsplit("\x1b[2J").next().unwrap_or("").to_string();
        text.lines()
            .any(|l| l.starts_with("* DOWN") && l.contains("w3"))
            && last.lines().any(|l| l.contains("DOWN") && l.contains("w3"))
    };
    assert!(
        wait_until(Duration::from_secs(5), || marked(&out)),
        "no frame marked w3 down:\n{}",
        out.lock().unwrap()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
}
