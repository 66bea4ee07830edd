//! Test harness: real `ringkv node` processes on free loopback ports (the
//! current build, or for upgrade tests a previous release's binary), a
//! blocking RESP client, and polling with deadlines (never bare sleeps).

#![allow(dead_code)]

pub mod redis_server;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringkv::admin::Status;
use ringkv::membership::State;
use ringkv::resp::codec::{encode_command, Reply, ReplyDecoder};
use tokio_util::codec::Decoder;

/// Heartbeat interval the test nodes use.
pub const HEARTBEAT_MS: u64 = 50;
/// Failure timeout the test nodes use.
pub const FAILURE_MS: u64 = 300;

/// A free loopback port for a node to listen on.
///
/// Taken below the kernel's ephemeral range (32768 and up): a port picked
/// there (say by binding port 0) can be grabbed by some outgoing
/// connection before the node binds it. Ports are handed out once per test
/// process, from a per-process starting point, and each is checked free.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = *START.get_or_init(|| std::process::id().wrapping_mul(7919) % SPAN);
    loop {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One node process.
pub struct TestNode {
    pub name: String,
    pub client: String,
    pub peer: String,
    pub admin: String,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    /// Flags used instead of the cluster's `extra` (see [`Cluster::add`]).
    pub flags: Option<Vec<String>>,
    /// The `ringkv` binary it runs; `None`: the current build. A rolling
    /// upgrade test sets it to a previous release's binary, and changes it
    /// between a [`Cluster::stop`] and the next [`Cluster::spawn`].
    pub binary: Option<PathBuf>,
}

/// A cluster of node processes that dies with the test.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
    pub extra: Vec<String>,
}

impl Cluster {
    /// Starts `names` as a cluster, each seeded with all others, with
    /// `extra` flags, and waits until every node sees all up.
    pub fn start(names: &[&str], extra: &[&str]) -> Cluster {
        Cluster::start_binary(names, extra, None)
    }

    /// [`Cluster::start`], every node running `binary` (`None`: the
    /// current build).
    pub fn start_binary(names: &[&str], extra: &[&str], binary: Option<&Path>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes = names
            .iter()
            .map(|n| TestNode {
                name: n.to_string(),
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("127.0.0.1:{}", free_port()),
                admin: format!("127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(n),
                child: None,
                flags: None,
                binary: binary.map(Path::to_path_buf),
            })
            .collect();
        let mut c = Cluster {
            dir,
            nodes,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..c.nodes.len() {
            c.spawn(i);
        }
        let all = c.nodes.len();
        for i in 0..all {
            assert!(
                wait_until(Duration::from_secs(20), || c.up_count(i) == Some(all)),
                "node {} did not see all {all} nodes up",
                c.nodes[i].name
            );
        }
        c
    }

    /// Starts (or restarts) node `i` on its own data dir.
    pub fn spawn(&mut self, i: usize) {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n.peer.clone())
            .collect();
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", n.name)))
            .unwrap();
        let current = Path::new(env!("CARGO_BIN_EXE_ringkv"));
        let mut cmd = Command::new(n.binary.as_deref().unwrap_or(current));
        cmd.args([
            "node", "--name", &n.name, "--client", &n.client, "--peer", &n.peer, "--admin",
            &n.admin,
        ])
        .arg("--data-dir")
        .arg(&n.data_dir)
        .args(["--set", &format!("heartbeat_interval_ms={HEARTBEAT_MS}")])
        // Many test nodes share the machine: one runtime thread each.
        .args(["--set", "worker_threads=1"])
        .args(["--set", &format!("failure_timeout_ms={FAILURE_MS}")])
        .args(n.flags.as_ref().unwrap_or(&self.extra))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        if !seeds.is_empty() {
            cmd.args(["--seeds", &seeds.join(",")]);
        }
        let child = cmd.spawn().expect("spawn ringkv node");
        self.nodes[i].child = Some(child);
        let admin = self.nodes[i].admin.clone();
        assert!(
            wait_until(Duration::from_secs(10), || http_get(&admin, "/health")
                .is_some()),
            "node {} did not start; log:\n{}",
            self.nodes[i].name,
            self.log(i)
        );
    }

    /// Starts one more node, `name`, seeded with every node so far (which
    /// do not seed it back), with `flags` instead of the cluster's extra
    /// flags. Does not wait for it to join. Returns its index.
    pub fn add(&mut self, name: &str, flags: &[&str]) -> usize {
        self.nodes.push(TestNode {
            name: name.to_string(),
            client: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            admin: format!("127.0.0.1:{}", free_port()),
            data_dir: self.dir.path().join(name),
            child: None,
            flags: Some(flags.iter().map(|s| s.to_string()).collect()),
            binary: None,
        });
        let i = self.nodes.len() - 1;
        self.spawn(i);
        i
    }

    /// The process id of node `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(|c| c.id())
    }

    /// Whether node `i`'s process is still running (not exited).
    pub fn alive(&mut self, i: usize) -> bool {
        match self.nodes[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops node `i` gracefully: SIGTERM, then waits for it to exit (a
    /// node flushes its commit log and marks the stop clean). If it has
    /// not exited within `limit`, it is SIGKILLed and the test fails.
    /// Returns how it exited; `None` if it was not running.
    pub fn stop(&mut self, i: usize, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.nodes[i].child.take()?;
        // SAFETY: kill(2) on the pid of a child this harness spawned and
        // has not reaped (so the pid cannot have been reused).
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to {}", self.nodes[i].name);
        let mut status = None;
        let exited = wait_until(limit, || {
            status = child.try_wait().expect("wait for a node");
            status.is_some()
        });
        if !exited {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "{} did not exit within {limit:?} of SIGTERM; log:\n{}",
                self.nodes[i].name,
                self.log(i)
            );
        }
        status
    }

    /// Node `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.nodes[i].name)))
            .unwrap_or_default()
    }

    /// A RESP client to node `i`.
    pub fn client(&self, i: usize) -> Client {
        Client::connect(&self.nodes[i].client)
    }

    /// Node `i`'s `/status`, if it answers.
    pub fn status(&self, i: usize) -> Option<Status> {
        let body = http_get(&self.nodes[i].admin, "/status")?;
        serde_json::from_str(&body).ok()
    }

    /// How many nodes node `i` sees up (itself included).
    pub fn up_count(&self, i: usize) -> Option<usize> {
        Some(
            self.status(i)?
                .nodes
                .iter()
                .filter(|n| n.state == State::Up)
                .count(),
        )
    }

    /// The state of `name` in node `i`'s routing table.
    pub fn state_of(&self, i: usize, name: &str) -> Option<State> {
        self.status(i)?
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.state)
    }

    /// Kills node `i` with SIGKILL, starts it again on its own data dir,
    /// and waits until it sees every node of the cluster up.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        let all = self.nodes.len();
        assert!(
            wait_until(Duration::from_secs(10), || self.up_count(i) == Some(all)),
            "{} did not come back",
            self.nodes[i].name
        );
    }

    /// Whether node `i` answers `args` with `+OK` within `limit` (asked
    /// again until then).
    pub fn ok_within(&self, i: usize, args: &[&str], limit: Duration) -> bool {
        wait_until(limit, || self.client(i).cmd(args) == Reply::ok())
    }

    /// Why `name` takes no writes, as node `i`'s `/status` says (`None`
    /// inside: it takes writes); `None` if either is unknown.
    pub fn write_fence(&self, i: usize, name: &str) -> Option<Option<String>> {
        let status = self.status(i)?;
        let node = status.nodes.into_iter().find(|n| n.name == name)?;
        Some(node.write_fenced)
    }

    /// Index of the node named `name`.
    pub fn index(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for i in 0..self.nodes.len() {
                eprintln!("---- log of {} ----\n{}", self.nodes[i].name, self.log(i));
            }
        }
    }
}

/// GET `path` on an admin address; the body if the answer was 200.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

/// POST a JSON body to an admin address; the body of the answer if 200.
pub fn http_post(addr: &str, path: &str, json: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.split_whitespace()
        .nth(1)
        .filter(|c| *c == "200")
        .map(|_| body.to_string())
}

/// Sends a fault-injection command (JSON) to node `i` (started with
/// `--fault-injection`).
pub fn fault(c: &Cluster, i: usize, json: &str) {
    let out = http_post(&c.nodes[i].admin, "/fault", json);
    assert_eq!(out.as_deref(), Some("ok\n"), "fault on {}", c.nodes[i].name);
}

/// Cuts every node of `c` off from the others but `side` (names), and
/// waits until every node of each side sees the other side down.
pub fn split(c: &Cluster, side: &[&str]) {
    let names = side.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>();
    let json = format!(
        r#"{{"op":"split","name":"p","nodes":[{}]}}"#,
        names.join(",")
    );
    for i in 0..c.nodes.len() {
        fault(c, i, &json);
    }
    // Every node on each side must see every node on the other side down:
    // one that still sees a node across the cut up would send it requests
    // (a counter's increment to its owner, say) that fail once it is seen
    // down.
    let (here, there): (Vec<usize>, Vec<usize>) =
        (0..c.nodes.len()).partition(|i| side.contains(&c.nodes[*i].name.as_str()));
    assert!(!there.is_empty(), "a node on the other side");
    let cut = |a: &[usize], b: &[usize]| {
        a.iter().all(|i| {
            b.iter()
                .all(|j| c.state_of(*i, &c.nodes[*j].name) == Some(State::Down))
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), || cut(&here, &there)
            && cut(&there, &here)),
        "the two sides never saw each other down"
    );
}

/// Heals the partition [`split`] made.
pub fn heal(c: &Cluster) {
    for i in 0..c.nodes.len() {
        fault(c, i, r#"{"op":"join","name":"p"}"#);
    }
}

/// A key named `prefix` plus a number with at least `n` of its replicas
/// among `nodes` (as node 0's ring places them).
pub fn key_with_replicas_on(c: &Cluster, prefix: &str, nodes: &[&str], n: usize) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| {
            let pref = strings(&c.client(0).cmd(&["RINGKV", "PREFLIST", k]));
            pref.iter().filter(|p| nodes.contains(&p.as_str())).count() >= n
        })
        .expect("some key has its replicas there")
}

/// A blocking RESP client.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    decoder: ReplyDecoder,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: BytesMut::new(),
            decoder: ReplyDecoder::default(),
        }
    }

    /// A client that gives up on a connection or a reply after `timeout`
    /// (for tests whose nodes may be down, paused or cut off); `None` when
    /// the node cannot be reached.
    pub fn try_connect(addr: &str, timeout: Duration) -> Option<Client> {
        let addr = addr.parse().ok()?;
        let stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        stream.set_write_timeout(Some(timeout)).ok()?;
        stream.set_nodelay(true).ok()?;
        Some(Client {
            stream,
            buf: BytesMut::new(),
            decoder: ReplyDecoder::default(),
        })
    }

    /// Sends a command and reads its reply; `None` on a broken connection
    /// or a timeout (the command may or may not have run).
    pub fn try_cmd(&mut self, args: &[&str]) -> Option<Reply> {
        let mut out = BytesMut::new();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        encode_command(&args, &mut out);
        self.stream.write_all(&out).ok()?;
        self.read()
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends one command without reading the reply.
    pub fn send(&mut self, args: &[&str]) {
        let mut out = BytesMut::new();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        encode_command(&args, &mut out);
        self.stream.write_all(&out).unwrap();
    }

    /// Reads one reply, or None if the server closed the connection.
    pub fn read(&mut self) -> Option<Reply> {
        loop {
            if let Some(r) = self.decoder.decode(&mut self.buf).expect("valid reply") {
                return Some(r);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        self.send(args);
        self.read().expect("connection closed")
    }
}

/// A bulk reply.
pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// The strings of an array reply of bulk strings.
pub fn strings(r: &Reply) -> Vec<String> {
    match r {
        Reply::Array(items) => items
            .iter()
            .map(|i| match i {
                Reply::Bulk(b) => String::from_utf8_lossy(b).to_string(),
                other => format!("{other:?}"),
            })
            .collect(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// What a node reads of `key`, as the history checker sees it (by the
/// key's first letter: `h` a hash, `s` a set, anything else a string or
/// counter), the one reader of every Jepsen-style test here; `None` if
/// the node does not answer normally.
pub fn observe(addr: &str, key: &str) -> Option<ringkv::history::Observed> {
    let mut c = Client::try_connect(addr, Duration::from_secs(10))?;
    let read = |c: &mut Client, cmd: &str| match c.try_cmd(&[cmd, key])? {
        r @ Reply::Array(_) => Some(strings(&r)),
        _ => None,
    };
    Some(match key.as_bytes()[0] {
        b'h' => {
            let flat = read(&mut c, "HGETALL")?;
            let pairs: std::collections::BTreeMap<Bytes, Bytes> = flat
                .chunks(2)
                .map(|p| (Bytes::from(p[0].clone()), Bytes::from(p[1].clone())))
                .collect();
            if pairs.is_empty() {
                ringkv::history::Observed::Absent
            } else {
                ringkv::history::Observed::Hash(pairs)
            }
        }
        b's' => {
            let members: std::collections::BTreeSet<Bytes> = read(&mut c, "SMEMBERS")?
                .into_iter()
                .map(Bytes::from)
                .collect();
            if members.is_empty() {
                ringkv::history::Observed::Absent
            } else {
                ringkv::history::Observed::Set(members)
            }
        }
        _ => match c.try_cmd(&["GET", key])? {
            Reply::Bulk(v) => ringkv::history::Observed::Str(v),
            Reply::Nil => ringkv::history::Observed::Absent,
            _ => return None,
        },
    })
}
