//! Backups taken while a cluster serves, restored whole and one node at a
//! time, through the `ringkv backup` and `ringkv restore` commands.
//!
//! - A whole 3-node cluster is backed up node by node under a write load,
//!   its data dirs are destroyed and restored, and the cluster restarted:
//!   every write acknowledged before the first backup began reads back,
//!   of every type, and nothing reads back that was never written.
//! - One node is restored from an older backup into a cluster that went on
//!   writing: nothing newer is overwritten, no delete comes back, and a
//!   counter keeps every increment, counted once.
//! - Restore refuses what it must: a damaged backup, a node still up, a
//!   backup of another cluster, a non-empty data dir.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bulk, strings, wait_until, Client, Cluster};
use ringkv::resp::codec::Reply;

const FAST_AE: &[&str] = &["--set", "anti_entropy_interval_ms=300"];

/// Runs `ringkv ARGS`; returns (success, stdout + stderr).
fn ringkv(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(args)
        .output()
        .expect("run ringkv");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `ringkv restore BACKUP --data-dir DATA` into the running cluster
/// of `admin`, or as part of a whole cluster when `None`.
fn restore(backup: &Path, data: &Path, admin: Option<&str>) -> (bool, String) {
    let mut args = vec!["restore", path(backup), "--data-dir", path(data)];
    match admin {
        Some(a) => args.extend(["--admin", a]),
        None => args.push("--whole-cluster"),
    }
    ringkv(&args)
}

/// Backs node `i` up into `dir`, asserting that it worked.
fn backup(c: &Cluster, i: usize, dir: &Path) {
    let (ok, out) = ringkv(&["backup", "--admin", &c.nodes[i].admin, path(dir)]);
    assert!(ok, "backup of {} failed: {out}", c.nodes[i].name);
    assert!(out.contains("backed up"), "{out}");
}

/// The data every test writes before its backups: one key of each type
/// per index, and a deleted string.
fn write_fixture(c: &Cluster, n: usize) {
    for k in 0..n {
        let mut cl = c.client(k % c.nodes.len());
        let v = format!("v1-{k}");
        assert_eq!(cl.cmd(&["SET", &format!("s:{k}"), &v]), Reply::ok());
        assert_eq!(
            cl.cmd(&["SET", &format!("ttl:{k}"), &v, "EX", "3600"]),
            Reply::ok()
        );
        assert_eq!(
            cl.cmd(&["INCRBY", &format!("c:{k}"), "5"]),
            Reply::Integer(5)
        );
        assert_eq!(
            cl.cmd(&["HSET", &format!("h:{k}"), "a", &v]),
            Reply::Integer(1)
        );
        assert_eq!(
            cl.cmd(&["SADD", &format!("set:{k}"), "x", "y"]),
            Reply::Integer(2)
        );
        assert_eq!(cl.cmd(&["SET", &format!("gone:{k}"), &v]), Reply::ok());
        assert_eq!(cl.cmd(&["DEL", &format!("gone:{k}")]), Reply::Integer(1));
    }
}

/// Asserts the fixture reads back through node `i`, with the counter at
/// `count`.
fn check_fixture(cl: &mut Client, n: usize, count: i64) {
    for k in 0..n {
        let v = format!("v1-{k}");
        assert_eq!(cl.cmd(&["GET", &format!("s:{k}")]), bulk(&v), "s:{k}");
        assert_eq!(cl.cmd(&["GET", &format!("ttl:{k}")]), bulk(&v), "ttl:{k}");
        match cl.cmd(&["TTL", &format!("ttl:{k}")]) {
            Reply::Integer(t) => assert!((3000..=3600).contains(&t), "TTL ttl:{k} = {t}"),
            other => panic!("TTL ttl:{k}: {other:?}"),
        }
        assert_eq!(
            cl.cmd(&["GET", &format!("c:{k}")]),
            bulk(&count.to_string()),
            "c:{k}"
        );
        assert_eq!(
            strings(&cl.cmd(&["HGETALL", &format!("h:{k}")])),
            vec!["a".to_string(), v.clone()],
            "h:{k}"
        );
        let mut members = strings(&cl.cmd(&["SMEMBERS", &format!("set:{k}")]));
        members.sort();
        assert_eq!(members, vec!["x", "y"], "set:{k}");
        assert_eq!(
            cl.cmd(&["GET", &format!("gone:{k}")]),
            Reply::Nil,
            "gone:{k}"
        );
    }
}

/// Writes `load:N` keys, each once with a unique value, through every
/// node in turn until stopped. Returns each write's key, value, and when
/// it was acknowledged (None: no acknowledgement).
fn load(
    c: &Cluster,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(String, Option<Instant>)>> {
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.client.clone()).collect();
    std::thread::spawn(move || {
        let mut done = Vec::new();
        let mut clients: Vec<Client> = addrs.iter().map(|a| Client::connect(a)).collect();
        let mut k = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("load:{k}");
            let n = clients.len();
            let reply = clients[k % n].try_cmd(&["SET", &key, &format!("w{k}")]);
            done.push((key, (reply == Some(Reply::ok())).then(Instant::now)));
            k += 1;
        }
        done
    })
}

/// The load's writes read back: every one acknowledged before `began`,
/// and no value that was not written.
fn check_load(cl: &mut Client, writes: &[(String, Option<Instant>)], began: Instant) {
    let mut before = 0;
    for (k, (key, acked)) in writes.iter().enumerate() {
        let got = cl.cmd(&["GET", key]);
        if acked.is_some_and(|t| t < began) {
            before += 1;
            assert_eq!(
                got,
                bulk(&format!("w{k}")),
                "{key}, acknowledged before the backup"
            );
        } else {
            assert!(
                got == Reply::Nil || got == bulk(&format!("w{k}")),
                "{key}: {got:?} was never written"
            );
        }
    }
    assert!(
        before > 0,
        "no load write was acknowledged before the backup"
    );
}

#[test]
fn a_whole_cluster_backed_up_under_load_comes_back_from_its_backups() {
    let mut c = Cluster::start(&["a", "b", "c"], FAST_AE);
    write_fixture(&c, 20);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(&c, stop.clone());
    // Let the load get going, then back every node up while it runs.
    assert!(wait_until(Duration::from_secs(10), || {
        c.client(0).cmd(&["EXISTS", "load:50"]) == Reply::Integer(1)
    }));
    let backups = tempfile::tempdir().unwrap();
    let began = Instant::now();
    for i in 0..3 {
        backup(&c, i, &backups.path().join(&c.nodes[i].name));
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    let incarnations: Vec<String> = (0..3)
        .map(|i| std::fs::read_to_string(c.nodes[i].data_dir.join("incarnation")).unwrap())
        .collect();
    for i in 0..3 {
        c.kill(i);
        std::fs::remove_dir_all(&c.nodes[i].data_dir).unwrap();
    }
    for i in 0..3 {
        let (ok, out) = restore(
            &backups.path().join(&c.nodes[i].name),
            &c.nodes[i].data_dir,
            None,
        );
        assert!(ok, "restore: {out}");
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for (i, before) in incarnations.iter().enumerate() {
        assert!(wait_until(Duration::from_secs(20), || c.up_count(i) == Some(3)));
        let now = std::fs::read_to_string(c.nodes[i].data_dir.join("incarnation")).unwrap();
        assert_ne!(&now, before, "a restored node must take a new incarnation");
    }
    for i in 0..3 {
        let mut cl = c.client(i);
        check_fixture(&mut cl, 20, 5);
        check_load(&mut cl, &writes, began);
    }
    // Counting goes on from the restored totals, once per increment.
    for i in 0..3 {
        assert_eq!(
            c.client(i).cmd(&["INCR", "c:0"]),
            Reply::Integer(6 + i as i64)
        );
    }
}

/// The state `RINGKV LOCAL` shows of `key` on node `i`, minus the value.
fn local(c: &Cluster, i: usize, key: &str) -> Option<Vec<Reply>> {
    match c.client(i).cmd(&["RINGKV", "LOCAL", key]) {
        Reply::Array(mut f) => Some(f.split_off(1)),
        _ => None,
    }
}

#[test]
fn one_node_restored_from_an_older_backup_overwrites_nothing_newer() {
    let mut c = Cluster::start(&["a", "b", "c"], FAST_AE);
    write_fixture(&c, 10);
    let dir = tempfile::tempdir().unwrap();
    let b_backup = dir.path().join("b");
    backup(&c, 1, &b_backup);
    // The cluster goes on: newer values, deletes, more increments, more
    // fields and members.
    let mut a = c.client(0);
    for k in 0..10 {
        assert_eq!(a.cmd(&["SET", &format!("s:{k}"), "v2"]), Reply::ok());
        assert_eq!(a.cmd(&["DEL", &format!("ttl:{k}")]), Reply::Integer(1));
        assert_eq!(
            a.cmd(&["INCRBY", &format!("c:{k}"), "2"]),
            Reply::Integer(7)
        );
        assert_eq!(
            a.cmd(&["HSET", &format!("h:{k}"), "b", "2"]),
            Reply::Integer(1)
        );
        assert_eq!(
            a.cmd(&["SREM", &format!("set:{k}"), "x"]),
            Reply::Integer(1)
        );
    }

    // Refusals first: b is still up; a damaged copy; another cluster.
    let target = c.nodes[1].data_dir.clone();
    let moved = dir.path().join("b-old");
    let (ok, out) = restore(&b_backup, &moved, Some(&c.nodes[0].admin));
    assert!(!ok && out.contains("b is up in that cluster"), "{out}");
    let damaged = dir.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for f in ["manifest.json", "data.snap"] {
        std::fs::copy(b_backup.join(f), damaged.join(f)).unwrap();
    }
    let mut bytes = std::fs::read(damaged.join("data.snap")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(damaged.join("data.snap"), bytes).unwrap();
    let (ok, out) = restore(&damaged, &moved, None);
    assert!(!ok && out.contains("is damaged or incomplete"), "{out}");
    let other = Cluster::start(&["b"], &[]);
    let (ok, out) = restore(&b_backup, &moved, Some(&other.nodes[0].admin));
    assert!(
        !ok && out.contains("this backup is of another cluster"),
        "{out}"
    );
    drop(other);

    c.kill(1);
    assert!(wait_until(Duration::from_secs(10), || c.up_count(0) == Some(2)));
    std::fs::rename(&target, &moved).unwrap();
    let (ok, out) = restore(&b_backup, &moved, Some(&c.nodes[0].admin));
    assert!(!ok && out.contains("is not empty"), "{out}");
    let (ok, out) = restore(&b_backup, &target, Some(&c.nodes[0].admin));
    assert!(ok, "restore: {out}");
    // Started under another name, it refuses.
    let (ok, out) = ringkv(&[
        "node",
        "--name",
        "d",
        "--data-dir",
        path(&target),
        "--client",
        "127.0.0.1:0",
        "--peer",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ]);
    assert!(
        !ok && out.contains("was restored from a backup of node b: start it with --name b"),
        "{out}"
    );
    c.spawn(1);
    assert!(wait_until(Duration::from_secs(20), || c.up_count(1) == Some(3)));

    // Anti-entropy brings b up to date: every key the same on all three.
    let keys: Vec<String> = (0..10)
        .flat_map(|k| ["s", "ttl", "c", "h", "set", "gone"].map(|t| format!("{t}:{k}")))
        .collect();
    assert!(
        wait_until(Duration::from_secs(30), || keys.iter().all(|key| {
            let a = local(&c, 0, key);
            a == local(&c, 1, key) && a == local(&c, 2, key)
        })),
        "the restored node did not converge with the others"
    );
    for i in [1, 0, 2] {
        let mut cl = c.client(i);
        for k in 0..10 {
            assert_eq!(
                cl.cmd(&["GET", &format!("s:{k}")]),
                bulk("v2"),
                "s:{k} via {i}"
            );
            assert_eq!(
                cl.cmd(&["GET", &format!("ttl:{k}")]),
                Reply::Nil,
                "a delete came back: ttl:{k}"
            );
            assert_eq!(cl.cmd(&["GET", &format!("gone:{k}")]), Reply::Nil);
            assert_eq!(
                cl.cmd(&["GET", &format!("c:{k}")]),
                bulk("7"),
                "c:{k} via {i}"
            );
            assert_eq!(cl.cmd(&["HGET", &format!("h:{k}"), "b"]), bulk("2"));
            assert_eq!(
                strings(&cl.cmd(&["SMEMBERS", &format!("set:{k}")])),
                vec!["y"]
            );
        }
    }
    // b counts on in a share of its own: nothing counted twice or lost.
    let mut b = c.client(1);
    assert_eq!(b.cmd(&["INCR", "c:0"]), Reply::Integer(8));
    assert_eq!(c.client(2).cmd(&["GET", "c:0"]), bulk("8"));
}
