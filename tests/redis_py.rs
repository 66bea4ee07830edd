//! redis-py, a real client library at its default settings, against every
//! node of a 3-node cluster: pytest runs `tests/python/test_clients.py`
//! twice, once with redis-py's defaults and once with `protocol=2`.
//!
//! The Python virtual environment (newest redis-py and pytest from PyPI)
//! is made once under `target/py-venv` and reused; it is rebuilt when it
//! does not import. Before the runs, the test records what redis-py sends
//! when it opens a connection (a recording proxy in front of node 1) and
//! prints it: that, not the documentation, says which protocol the
//! default run speaks.
//!
//! `REDIS_PY_AGAINST_REDIS=1` runs the same file against a redis-server
//! instead; it must pass there, which proves the Python tests right. (No
//! variable here is named `RINGKV_*`: nodes read those as settings.)

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis_server::RedisServer;
use common::{wait_until, Cluster};

/// How long one pytest run may take.
const PYTEST_DEADLINE: Duration = Duration::from_secs(300);
/// How long making the virtual environment may take (pip downloads).
const VENV_DEADLINE: Duration = Duration::from_secs(600);

#[test]
fn redis_py_at_its_defaults_works_against_every_node() {
    let venv = Venv::ready();
    println!(
        "redis-py {} and pytest {} in {}",
        venv.redis_py,
        venv.pytest,
        venv.dir.display()
    );
    let against_redis = std::env::var("REDIS_PY_AGAINST_REDIS").is_ok_and(|v| v == "1");
    let (target, addrs, _cluster, _redis) = if against_redis {
        let r = RedisServer::start();
        ("redis", vec![r.addr.clone(); 3], None, Some(r))
    } else {
        let c = Cluster::start(&["a", "b", "c"], &[]);
        let addrs = c.nodes.iter().map(|n| n.client.clone()).collect();
        ("ringkv", addrs, Some(c), None)
    };

    let mut failed = Vec::new();
    for protocol in [None, Some(2)] {
        let label = protocol.map_or("redis-py's defaults".to_string(), |p| {
            format!("protocol={p}")
        });
        let (commands, python_said) = handshake(venv, &addrs[0], protocol);
        let first = commands.first().cloned().unwrap_or_default();
        let wire = if first.starts_with(&["HELLO".to_string(), "3".to_string()]) {
            3
        } else {
            2
        };
        println!(
            "with {label}, redis-py opens a connection with:\n  {}\n  ({target} node 1 answered; Python: {python_said})\n  so it speaks RESP{wire}",
            commands.iter().map(|c| c.join(" ")).collect::<Vec<_>>().join("\n  ")
        );
        assert!(
            !commands.is_empty(),
            "redis-py sent nothing with {label}: {python_said}"
        );
        let (ok, output) = pytest(venv, &addrs, protocol, wire, target);
        let report = format!("==== pytest with {label} against {target} ====\n{output}");
        if ok {
            println!("{report}");
        } else {
            println!(
                "pytest with {label} against {target} failed: its output ends the failure message"
            );
            failed.push(report);
        }
    }
    assert!(
        failed.is_empty(),
        "redis-py tests failed against {target}:\n{}",
        failed.join("\n")
    );
}

/// redis-py with `ssl=True` at its defaults (the server's certificate and
/// host name checked against the CA it is given) against a node serving
/// TLS on its client port: writes, reads, counts.
#[test]
fn redis_py_with_ssl_true_talks_to_a_tls_node() {
    let venv = Venv::ready();
    let dir = tempfile::tempdir().unwrap();
    let ca = tls::Ca::new("ringkv test CA");
    let files = tls::Files::write(dir.path(), &ca);
    let set = |k: &str, p: &Path| format!("{k}={}", p.display());
    let flags = [
        "tls_client=true".to_string(),
        set("tls_cert_file", &files.cert),
        set("tls_key_file", &files.key),
        "tls_auth_clients=no".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().flat_map(|f| ["--set", f.as_str()]).collect();
    let c = Cluster::start(&["n1"], &flags);
    let (host, port) = c.nodes[0].client.rsplit_once(':').unwrap();
    let script = r#"
import sys, redis
r = redis.Redis(host=sys.argv[1], port=int(sys.argv[2]), ssl=True, ssl_ca_certs=sys.argv[3])
assert r.set("k", "v") is True
assert r.get("k") == b"v", r.get("k")
assert r.incr("n") == 1
assert r.ping() is True
print("redis-py", redis.__version__, "over TLS: ok")
"#;
    let mut cmd = Command::new(&venv.python);
    cmd.args(["-c", script, host, port]).arg(&files.ca);
    let (status, out) = run(&mut cmd, PYTEST_DEADLINE);
    println!("{out}");
    assert!(status.is_some_and(|s| s.success()), "{out}");
    assert!(out.contains("over TLS: ok"), "{out}");
}

/// The virtual environment, and the versions it holds.
struct Venv {
    dir: PathBuf,
    python: PathBuf,
    redis_py: String,
    pytest: String,
}

impl Venv {
    /// The environment, made (or found) once per test process: the tests
    /// here run side by side, and two making it at once collide.
    fn ready() -> &'static Venv {
        static VENV: std::sync::OnceLock<Venv> = std::sync::OnceLock::new();
        VENV.get_or_init(Venv::make)
    }

    /// The cached environment if it imports, else a fresh one.
    fn make() -> Venv {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("CARGO_TARGET_TMPDIR is inside the target dir");
        let dir = target.join("py-venv");
        if let Some(v) = Venv::probe(&dir) {
            return v;
        }
        if dir.exists() {
            println!(
                "{} does not import redis and pytest: rebuilding it",
                dir.display()
            );
            std::fs::remove_dir_all(&dir)
                .unwrap_or_else(|e| panic!("remove the broken {}: {e}", dir.display()));
        }
        let (status, out) = run(
            Command::new("python3").arg("-m").arg("venv").arg(&dir),
            VENV_DEADLINE,
        );
        assert!(
            status.is_some_and(|s| s.success()),
            "`python3 -m venv {}` failed; on Debian or Ubuntu install python3-venv \
             (apt-get install python3-venv; .ci/run does):\n{out}",
            dir.display()
        );
        let (status, out) = run(
            Command::new(dir.join("bin/python")).args([
                "-m",
                "pip",
                "install",
                "--upgrade",
                "redis",
                "pytest",
            ]),
            VENV_DEADLINE,
        );
        assert!(
            status.is_some_and(|s| s.success()),
            "pip install --upgrade redis pytest failed:\n{out}"
        );
        std::fs::write(dir.join(".ringkv-ok"), "made by tests/redis_py.rs\n")
            .unwrap_or_else(|e| panic!("mark {} ready: {e}", dir.display()));
        Venv::probe(&dir)
            .unwrap_or_else(|| panic!("{} still does not import redis and pytest", dir.display()))
    }

    /// The environment at `dir`, if it was finished and imports both.
    fn probe(dir: &Path) -> Option<Venv> {
        let python = dir.join("bin/python");
        if !dir.join(".ringkv-ok").exists() || !python.exists() {
            return None;
        }
        let out = Command::new(&python)
            .args([
                "-c",
                "import redis, pytest; print(redis.__version__, pytest.__version__)",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        Some(Venv {
            dir: dir.to_path_buf(),
            python,
            redis_py: words.next()?.to_string(),
            pytest: words.next()?.to_string(),
        })
    }
}

/// Runs pytest on test_clients.py; whether it passed, and its output.
fn pytest(
    venv: &Venv,
    addrs: &[String],
    protocol: Option<u8>,
    wire: u8,
    target: &str,
) -> (bool, String) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_clients.py");
    let mut cmd = Command::new(&venv.python);
    cmd.args([
        "-m",
        "pytest",
        "-v",
        "-rA",
        "--tb=short",
        "-p",
        "no:cacheprovider",
    ])
    .args(["-o", "faulthandler_timeout=60"])
    .arg(&file)
    .env("REDIS_PY_NODES", addrs.join(","))
    .env(
        "REDIS_PY_PROTOCOL",
        protocol.map_or(String::new(), |p| p.to_string()),
    )
    .env("REDIS_PY_WIRE_PROTOCOL", wire.to_string())
    .env("REDIS_PY_TARGET", target);
    let (status, out) = run(&mut cmd, PYTEST_DEADLINE);
    match status {
        Some(s) => (s.success(), out),
        None => (
            false,
            format!("{out}\n<pytest killed after {PYTEST_DEADLINE:?}>"),
        ),
    }
}

/// Runs `cmd` with its output in a file; its status (`None` if it was
/// killed at the deadline) and its stdout and stderr.
fn run(cmd: &mut Command, deadline: Duration) -> (Option<ExitStatus>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("out");
    let file = std::fs::File::create(&path).expect("output file");
    let mut child: Child = match cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("output file"))
        .stderr(file)
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("{cmd:?}: not found (python3 is needed: apt-get install python3 python3-venv)")
        }
        Err(e) => panic!("{cmd:?}: {e}"),
    };
    let mut status = None;
    wait_until(deadline, || {
        status = child.try_wait().expect("wait for child");
        status.is_some()
    });
    if status.is_none() {
        child.kill().expect("kill child at its deadline");
        child.wait().expect("reap child");
    }
    let out = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("<output: {e}>"));
    (status, out)
}

/// What redis-py sends when it opens a connection: `ping()` through a
/// recording proxy in front of `upstream`. Returns the commands of its
/// first connection, and what Python printed.
fn handshake(venv: &Venv, upstream: &str, protocol: Option<u8>) -> (Vec<Vec<String>>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listener");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("proxy address").port();
    let kwargs = protocol.map_or(String::new(), |p| format!(", protocol={p}"));
    let script = format!(
        "import redis\nr = redis.Redis('127.0.0.1', {port}{kwargs})\n\
         try:\n    print('ping() ->', r.ping())\n\
         except Exception as e:\n    print('ping() raised', type(e).__name__, e)\n"
    );
    let mut cmd = Command::new(&venv.python);
    cmd.args(["-c", &script]);
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let rec = recorded.clone();
    let upstream = upstream.to_string();
    let proxy = std::thread::spawn(move || {
        let mut client = None;
        wait_until(Duration::from_secs(20), || match listener.accept() {
            Ok((s, _)) => {
                client = Some(s);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("proxy accept: {e}"),
        });
        // Later connections (retries) are refused: only the first is recorded.
        drop(listener);
        if let Some(client) = client {
            relay(client, &upstream, &rec);
        }
    });
    let (status, out) = run(&mut cmd, Duration::from_secs(30));
    proxy.join().expect("proxy thread");
    let said = match status {
        Some(s) if s.success() => out.trim().to_string(),
        other => format!("{} (exit {other:?})", out.trim()),
    };
    let bytes = recorded.lock().expect("recording").clone();
    (parse_commands(&bytes), said)
}

/// Relays one connection both ways until the client closes, recording what
/// the client sent.
fn relay(client: TcpStream, upstream: &str, rec: &Arc<Mutex<Vec<u8>>>) {
    client
        .set_nonblocking(false)
        .expect("blocking proxied socket");
    let server = TcpStream::connect(upstream).expect("proxy connects upstream");
    let (mut c_in, mut s_out) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let (mut s_in, mut c_out) = (server, client);
    let back = std::thread::spawn(move || {
        // Ends when the server closes, or when the forward side shuts it.
        if let Err(e) = std::io::copy(&mut s_in, &mut c_out) {
            eprintln!("proxy server->client: {e}");
        }
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        match c_in.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                rec.lock().expect("recording").extend_from_slice(&buf[..n]);
                if s_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) => {
                eprintln!("proxy client->server: {e}");
                break;
            }
        }
    }
    if let Err(e) = s_out.shutdown(Shutdown::Both) {
        eprintln!("proxy shutdown upstream: {e}");
    }
    back.join().expect("proxy back thread");
}

/// Splits bytes a client sent into commands (RESP arrays of bulk strings).
fn parse_commands(mut buf: &[u8]) -> Vec<Vec<String>> {
    fn line(buf: &mut &[u8]) -> Option<String> {
        let end = buf.windows(2).position(|w| w == b"\r\n")?;
        let text = String::from_utf8_lossy(&buf[..end]).into_owned();
        *buf = &buf[end + 2..];
        Some(text)
    }
    let mut out = Vec::new();
    while let Some(head) = line(&mut buf) {
        let Some(n) = head.strip_prefix('*').and_then(|n| n.parse::<usize>().ok()) else {
            out.push(vec![format!("<not a RESP command: {head:?}>")]);
            break;
        };
        let mut words = Vec::new();
        for _ in 0..n {
            let len = line(&mut buf)
                .and_then(|h| h.strip_prefix('$').and_then(|l| l.parse::<usize>().ok()));
            match len.filter(|l| buf.len() >= l + 2) {
                Some(l) => {
                    words.push(String::from_utf8_lossy(&buf[..l]).into_owned());
                    buf = &buf[l + 2..];
                }
                None => {
                    words.push("<truncated>".into());
                    break;
                }
            }
        }
        out.push(words);
    }
    out
}

#[test]
fn commands_are_parsed_from_what_a_client_sent() {
    let sent = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$5\r\nab";
    assert_eq!(
        parse_commands(sent),
        [vec!["HELLO", "3"], vec!["PING"], vec!["GET", "<truncated>"]]
    );
    assert_eq!(
        parse_commands(b"PING\r\n"),
        [vec!["<not a RESP command: \"PING\">"]]
    );
}
