//! TLS on the client port, through real processes: redis-cli with
//! `--tls --cacert`, client certificates required by default (as Redis
//! does) and checked against the CA, a plaintext client closed unread,
//! certificates reloaded on SIGHUP and on the symlink swap Kubernetes does
//! to a mounted Secret without dropping open connections, and settings
//! that cannot work refused at start. Certificates are made in the tests
//! (rcgen). redis-py with `ssl=True` is in `tests/redis_py.rs`.

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_until, Cluster};
use tls::{Ca, Files, TlsClient};

/// The settings of a node serving TLS with `files` (`auth`: its
/// `tls_auth_clients`, or Redis's default), without `tls_client`.
fn settings(files: &Files, auth: Option<&str>) -> Vec<String> {
    let mut s = vec![
        format!("tls_cert_file={}", files.cert.display()),
        format!("tls_key_file={}", files.key.display()),
        format!("tls_ca_cert_file={}", files.ca.display()),
    ];
    s.extend(auth.map(|a| format!("tls_auth_clients={a}")));
    s
}

/// `--set` flags for each of `settings`.
fn set(settings: impl IntoIterator<Item = String>) -> Vec<String> {
    (settings.into_iter())
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

/// The flags of a node serving TLS on its client port with `files`.
fn flags(files: &Files, auth: Option<&str>) -> Vec<String> {
    set(std::iter::once("tls_client=true".to_string()).chain(settings(files, auth)))
}

fn start(flags: &[String]) -> Cluster {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Cluster::start(&["n1"], &flags)
}

/// redis-cli's output for `args` against `addr` over TLS trusting `ca`.
fn redis_cli(addr: &str, ca: &Path, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(ca)
        .args(["-h", host, "-p", port])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn redis_cli_over_tls_writes_and_reads_and_a_plaintext_client_is_closed_unread() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ringkv test CA");
    let files = Files::write(dir.path(), &ca);
    let c = start(&flags(&files, Some("no")));
    let addr = &c.nodes[0].client;
    assert_eq!(redis_cli(addr, &files.ca, &["SET", "k", "v"]), "OK\n");
    assert_eq!(redis_cli(addr, &files.ca, &["GET", "k"]), "v\n");
    assert_eq!(redis_cli(addr, &files.ca, &["INCR", "n"]), "1\n");

    // A plaintext client gets no reply: the connection is closed.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut buf = [0u8; 64];
    match plain.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "a plaintext client got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "no close: {e}"),
    }
    assert!(wait_until(Duration::from_secs(5), || c.log(0).contains(
        "a plaintext client on the TLS port; closed without reading it"
    )));
}

#[test]
fn client_certificates_are_required_by_default_and_must_chain_to_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ringkv test CA");
    let files = Files::write(dir.path(), &ca);
    let c = start(&flags(&files, None));
    let addr = &c.nodes[0].client;
    let anonymous = TlsClient::connect(addr, &ca.pem(), None);
    assert!(anonymous.is_err(), "a client without a certificate got in");
    let mut ours = TlsClient::connect(addr, &ca.pem(), Some(&ca.issue("client")))
        .expect("a client certificate from the CA");
    assert_eq!(ours.cmd(&["SET", "k", "v"]), Ok("+OK\r\n".into()));
    let foreign = Ca::new("another CA");
    let theirs = TlsClient::connect(addr, &ca.pem(), Some(&foreign.issue("intruder")));
    assert!(theirs.is_err(), "a certificate from another CA got in");
}

#[test]
fn certificates_reload_on_a_symlink_swap_and_on_sighup_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (Ca::new("first CA"), Ca::new("second CA"));
    Files::write(&dir.path().join("v1"), &ca1);
    Files::write(&dir.path().join("v2"), &ca2);
    // What a mounted Kubernetes Secret looks like: files reached through
    // a symlink that an update swaps in one rename.
    let live = dir.path().join("live");
    std::os::unix::fs::symlink("v1", &live).unwrap();
    let through_link = Files {
        ca: live.join("ca.crt"),
        cert: live.join("node.crt"),
        key: live.join("node.key"),
    };
    let c = start(&flags(&through_link, Some("no")));
    let addr = &c.nodes[0].client;
    let mut open = TlsClient::connect(addr, &ca1.pem(), None).expect("the first certificate");

    let next = dir.path().join("live.next");
    std::os::unix::fs::symlink("v2", &next).unwrap();
    std::fs::rename(&next, &live).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || TlsClient::connect(
            addr,
            &ca2.pem(),
            None
        )
        .is_ok()),
        "the swapped certificate was not served; log:\n{}",
        c.log(0)
    );
    assert!(TlsClient::connect(addr, &ca1.pem(), None).is_err());
    assert_eq!(
        open.cmd(&["PING"]),
        Ok("+PONG\r\n".into()),
        "an open connection was dropped"
    );
    assert!(c.log(0).contains("TLS certificates reloaded"));

    // A bad rotation (a key that is not a key) keeps the certificate in use.
    std::fs::write(dir.path().join("v2/node.key"), "not a key").unwrap();
    assert!(wait_until(Duration::from_secs(10), || c.log(0).contains(
        "TLS certificates not reloaded; the previous ones stay in use"
    )));
    assert!(TlsClient::connect(addr, &ca2.pem(), None).is_ok());

    // SIGHUP reloads too.
    Files::write(&dir.path().join("v2"), &ca2);
    let reloads = |c: &Cluster| c.log(0).matches("reason=\"SIGHUP\"").count();
    let before = reloads(&c);
    let pid = c.nodes[0].child.as_ref().unwrap().id();
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) }, 0);
    assert!(
        wait_until(Duration::from_secs(10), || reloads(&c) > before),
        "{}",
        c.log(0)
    );
    assert!(TlsClient::connect(addr, &ca2.pem(), None).is_ok());
    assert_eq!(open.cmd(&["PING"]), Ok("+PONG\r\n".into()));
}

#[test]
fn tls_settings_that_cannot_work_stop_the_node_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let run = |sets: &[String]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringkv"));
        cmd.args(["node", "--name", "n1", "--client", "127.0.0.1:0"])
            .args([
                "--peer",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path().join("data"));
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["tls_client=true".into()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("tls_cert_file: must be set when tls_client is true"),
        "{err}"
    );
    let (code, err) = run(&["tls_auth_clients=maybe".into()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("tls_auth_clients: `maybe` is not yes, optional or no"),
        "{err}"
    );
    let ca = Ca::new("ringkv test CA");
    let files = Files::write(&dir.path().join("tls"), &ca);
    std::fs::write(&files.key, "not a key").unwrap();
    let mut sets: Vec<String> = std::iter::once("tls_client=true".to_string())
        .chain(settings(&files, Some("no")))
        .collect();
    let (code, err) = run(&sets);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&files.key.display().to_string()), "{err}");
    sets.retain(|s| !s.starts_with("tls_ca_cert_file"));
    sets.retain(|s| !s.starts_with("tls_auth_clients"));
    let (code, err) = run(&sets);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("tls_ca_cert_file: must be set to check client certificates"),
        "{err}"
    );
}

/// `tls_peers`: nodes whose certificates the cluster's CA signed form a
/// cluster over mutual TLS and serve; a node with another CA's
/// certificate is refused at the TLS handshake, logged, and never comes
/// up on either side.
#[test]
fn nodes_talk_over_mutual_tls_and_a_node_from_another_ca_never_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let files = Files::write(&dir.path().join("cluster"), &ca);
    let peer_flags =
        set(std::iter::once("tls_peers=true".to_string()).chain(settings(&files, None)));
    let as_str: Vec<&str> = peer_flags.iter().map(String::as_str).collect();
    let mut c = Cluster::start(&["n1", "n2", "n3"], &as_str);
    assert!(c.ok_within(0, &["SET", "k", "v"], Duration::from_secs(5)));
    assert_eq!(c.client(2).cmd(&["GET", "k"]), common::bulk("v"));

    let other = Ca::new("another CA");
    let theirs = Files::write(&dir.path().join("other"), &other);
    let their_flags =
        set(std::iter::once("tls_peers=true".to_string()).chain(settings(&theirs, None)));
    let as_str: Vec<&str> = their_flags.iter().map(String::as_str).collect();
    let intruder = c.add("n4", &as_str);
    assert!(
        wait_until(Duration::from_secs(10), || (0..3).any(|i| {
            let log = c.log(i);
            log.contains("refused a peer handshake") && log.contains("TLS:")
        })),
        "no node logged refusing n4's TLS handshake"
    );
    for i in 0..3 {
        assert_ne!(c.state_of(i, "n4"), Some(ringkv::membership::State::Up));
        assert_eq!(c.up_count(i), Some(3));
    }
    assert_eq!(c.up_count(intruder), Some(1), "n4 sees others up");
}

/// A base port whose client, peer and admin ports for `nodes` nodes (as
/// `up` and `scenario` lay them out) are all free.
fn free_base(nodes: u16) -> u16 {
    (0..200)
        .map(|_| 10_000 + (common::free_port() % 20_000))
        .find(|b| {
            (1..=nodes)
                .flat_map(|i| [i, 100 + i, 200 + i])
                .all(|o| std::net::TcpListener::bind(("127.0.0.1", b + o)).is_ok())
        })
        .expect("a free port range")
}

/// `ringkv ARGS`: exit code, stdout, stderr.
fn ringkv(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The node settings of a cluster with TLS on every port.
fn everywhere(files: &Files) -> Vec<String> {
    let on = ["tls_client=true", "tls_peers=true", "tls_admin=true"];
    let fast = ["heartbeat_interval_ms=50", "failure_timeout_ms=300"];
    set((on.iter().chain(&fast).map(|s| s.to_string())).chain(settings(files, None)))
}

/// `up` starts a cluster with TLS on its client, peer and admin ports and
/// prints the flags that reach it; `status` reads it over HTTPS; the admin
/// routes that act need a client certificate from the CA (`tls_auth_clients
/// = yes`), the read-only ones do not, and plain HTTP gets nothing.
#[test]
fn up_status_and_backup_work_against_a_cluster_with_tls_on_every_port() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let files = Files::write(&dir.path().join("tls"), &ca);
    let base = free_base(3);
    let mut up = Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(["up", "--nodes", "3", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--")
        .args(everywhere(&files))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(up.stdout.take().unwrap()));
    let ready = lines.next().expect("a line").unwrap();
    let (ca_path, cert, key) = (
        files.ca.display().to_string(),
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    assert!(
        ready.starts_with("ready: 3 nodes up")
            && ready.contains(&format!(
                "redis-cli --tls --cacert {ca_path} --cert {cert} --key {key} -p {}",
                base + 1
            ))
            && ready.contains(&format!("ringkv status --tls --cacert {ca_path} --admin")),
        "{ready}"
    );
    let admin = format!("127.0.0.1:{}", base + 201);

    let (code, out, err) = ringkv(&[
        "status", "--json", "--tls", "--cacert", &ca_path, "--admin", &admin,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{out}");
    assert!(nodes.iter().all(|n| n["state"] == "up"), "{out}");

    // Plain HTTP to the HTTPS port: closed, no answer.
    let (code, _, err) = ringkv(&["status", "--admin", &admin]);
    assert_ne!(code, Some(0), "plain HTTP got a status: {err}");

    // A route that copies the data needs a client certificate...
    let backup = dir.path().join("backup");
    let backup_s = backup.display().to_string();
    let tls = ["--tls", "--cacert", &ca_path, "--admin", &admin];
    let (code, _, err) = ringkv(&[&["backup", &backup_s][..], &tls].concat());
    assert_ne!(code, Some(0));
    assert!(
        err.contains("403") && err.contains("needs a client certificate from the cluster's CA"),
        "{err}"
    );
    // ...and works with one.
    let client = ca.issue("operator");
    std::fs::write(dir.path().join("op.crt"), &client.cert).unwrap();
    std::fs::write(dir.path().join("op.key"), &client.key).unwrap();
    let (op_crt, op_key) = (
        dir.path().join("op.crt").display().to_string(),
        dir.path().join("op.key").display().to_string(),
    );
    let with_cert = ["--cert", op_crt.as_str(), "--key", op_key.as_str()];
    let (code, out, err) = ringkv(&[&["backup", &backup_s][..], &tls, &with_cert].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        backup.read_dir().unwrap().next().is_some(),
        "an empty backup"
    );

    // The client port over TLS, with the certificate redis-cli is told of.
    let out = Command::new("redis-cli")
        .args([
            "--tls", "--cacert", &ca_path, "--cert", &cert, "--key", &key,
        ])
        .args(["-p", &(base + 2).to_string(), "SET", "k", "v"])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");

    // SAFETY: signalling the `up` process we spawned.
    unsafe { libc::kill(up.id() as i32, libc::SIGINT) };
    assert!(up.wait().unwrap().success());
}

/// `scenario` starts its nodes with TLS on every port (the flags after
/// `--`) and drives them over TLS: the kill-and-restart script gives the
/// same answers as over plaintext.
#[test]
fn a_scenario_runs_against_nodes_with_tls_on_every_port() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let files = Files::write(&dir.path().join("tls"), &ca);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/scenarios/kill_restart.chi"
    );
    let base = free_base(3).to_string();
    let data = dir.path().join("run").display().to_string();
    let mut args = vec!["scenario", script, "--seed", "7", "--base-port", &base];
    args.extend(["--data-dir", &data, "--json", "--"]);
    let flags = everywhere(&files);
    args.extend(flags.iter().map(String::as_str));
    let (code, out, err) = ringkv(&args);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let values: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == "get")
        .map(|v| v["value"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        values,
        ["blue", "round", "green", "round", "green", "round"],
        "{out}"
    );
}
