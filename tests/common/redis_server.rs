//! A reference `redis-server` for tests that compare ringkv with Redis.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` without persistence on a free loopback port, killed
/// on drop.
pub struct RedisServer {
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one and waits until it answers PING. Panics, naming the
    /// Debian package, if `redis-server` is not installed.
    pub fn start() -> RedisServer {
        let port = super::free_port();
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
                "redis-server is not installed (this test compares ringkv with it): \
                 apt-get install redis-server redis-tools (.ci/run does)"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let mut server = RedisServer {
            addr: format!("127.0.0.1:{port}"),
            child,
            dir,
        };
        if !super::wait_until(Duration::from_secs(10), || pong(&server.addr)) {
            let exited = server.child.try_wait();
            panic!(
                "redis-server on {} did not answer PING within 10 s (exited: {exited:?}); log:\n{}",
                server.addr,
                server.log()
            );
        }
        server
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let path = self.dir.path().join("redis.log");
        std::fs::read_to_string(&path).unwrap_or_else(|e| format!("<cannot read {path:?}: {e}>"))
    }
}

/// Whether `addr` answers an inline PING with +PONG.
fn pong(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let mut reply = [0u8; 7];
    s.set_read_timeout(Some(Duration::from_secs(2))).is_ok()
        && s.write_all(b"PING\r\n").is_ok()
        && s.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A failure here means the process is already gone, which is the goal;
        // say so rather than hide it.
        if let Err(e) = self.child.kill() {
            eprintln!("redis-server {}: kill: {e}", self.addr);
        }
        if let Err(e) = self.child.wait() {
            eprintln!("redis-server {}: wait: {e}", self.addr);
        }
    }
}
