//! The differential test's own raw RESP client and its reference
//! `redis-server` process.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::frame::{self, Frame};

/// How long one reply may take before the connection is given up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// What came back for one command.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// One complete reply: its bytes exactly, and its tree.
    Reply(Vec<u8>, Frame),
    /// The server closed the connection (EOF or reset) instead.
    Closed,
    /// No complete reply within [`REPLY_TIMEOUT`].
    Timeout,
    /// Bytes that are not RESP.
    Garbage(Vec<u8>, String),
    /// Not sent: the connection had already ended.
    NotSent,
}

impl Outcome {
    /// The raw bytes as `b"..."` with escapes, or what happened instead.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Reply(raw, _) => format!("{:?}", bytes::Bytes::copy_from_slice(raw)),
            Outcome::Closed => "<connection closed>".into(),
            Outcome::Timeout => format!("<no reply within {REPLY_TIMEOUT:?}>"),
            Outcome::Garbage(raw, e) => {
                format!("<not RESP: {e}: {:?}>", bytes::Bytes::copy_from_slice(raw))
            }
            Outcome::NotSent => "<not sent: connection already ended>".into(),
        }
    }
}

/// One raw connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    ended: bool,
}

impl Conn {
    pub fn connect(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            ended: false,
        })
    }

    /// Sends one command (an array of bulk strings) and reads exactly one
    /// reply. After a close, a timeout or garbage the connection is over:
    /// later calls return [`Outcome::NotSent`].
    pub fn call(&mut self, args: &[Vec<u8>]) -> Outcome {
        if self.ended {
            return Outcome::NotSent;
        }
        let outcome = self.exchange(args);
        self.ended = !matches!(outcome, Outcome::Reply(..));
        outcome
    }

    fn exchange(&mut self, args: &[Vec<u8>]) -> Outcome {
        if let Err(e) = self.stream.write_all(&encode(args)) {
            return io_outcome(e);
        }
        loop {
            match frame::parse(&self.buf) {
                Ok(Some((f, used))) => {
                    let raw = self.buf.drain(..used).collect();
                    return Outcome::Reply(raw, f);
                }
                Ok(None) => {}
                Err(e) => return Outcome::Garbage(std::mem::take(&mut self.buf), e),
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Outcome::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return io_outcome(e),
            }
        }
    }
}

/// A failed read or write: a peer that closed (whether the kernel says EOF,
/// reset or broken pipe depends on timing) or a timeout.
fn io_outcome(e: std::io::Error) -> Outcome {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::Timeout,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Outcome::Closed
        }
        _ => Outcome::Garbage(Vec::new(), format!("i/o error: {e}")),
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A `redis-server` without persistence on a free loopback port, killed
/// on drop.
pub struct RedisServer {
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start(port: u16) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let log = std::fs::File::create(dir.path().join("redis.log")).expect("redis-server log");
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis-server log"))
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "redis-server is not installed (it is the reference this test compares \
                 ringkv with): apt-get install redis-server redis-tools (.ci/run does)"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let mut server = RedisServer {
            addr: format!("127.0.0.1:{port}"),
            child,
            dir,
        };
        let ready = crate::common::wait_until(Duration::from_secs(10), || {
            Conn::connect(&server.addr)
                .map(|mut c| c.call(&[b"PING".to_vec()]))
                .is_ok_and(|o| matches!(o, Outcome::Reply(raw, _) if raw == b"+PONG\r\n"))
        });
        if !ready {
            let exited = server.child.try_wait().ok().flatten();
            panic!(
                "redis-server on {} did not answer PING within 10 s (exit: {exited:?}); log:\n{}",
                server.addr,
                server.log()
            );
        }
        server
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join("redis.log"))
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read {path:?}: {e}>"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Errors here mean the process is already gone, which is the goal.
        if let Err(e) = self.child.kill() {
            eprintln!("redis-server {}: kill: {e}", self.addr);
        }
        if let Err(e) = self.child.wait() {
            eprintln!("redis-server {}: wait: {e}", self.addr);
        }
    }
}
