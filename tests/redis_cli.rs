//! redis-cli 7 in interactive mode, as a person uses it: in a terminal
//! (tmux), with its hints and in RESP3 (`-3`). The same keystrokes go to a
//! session against redis-server and one against ringkv, and the screens
//! must read the same, but for the prompt's port.
//!
//! redis-cli reads COMMAND DOCS at start for the hints it shows after a
//! command name, and prints RESP3 replies by type (maps, nulls), so this
//! checks both from the client's side.

mod common;

use std::process::Command;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::{wait_until, Cluster};

/// A tmux session running `redis-cli -p PORT -3`, killed on drop.
struct Session {
    name: String,
    /// redis-cli's prompt, `host:port>`.
    prompt: String,
}

impl Session {
    fn start(name: &str, addr: &str) -> Session {
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-x", "100", "-y", "40", "-s", name])
            .arg(format!("redis-cli -h {host} -p {port} -3"))
            .status()
            .expect("tmux is installed (apt-get install tmux; .ci/run does)");
        assert!(status.success(), "tmux new-session failed");
        let s = Session {
            name: name.to_string(),
            prompt: format!("{addr}>"),
        };
        assert!(
            wait_until(Duration::from_secs(10), || s.prompts() > 0),
            "no redis-cli prompt:\n{}",
            s.screen()
        );
        s
    }

    /// Types `text` (no Enter).
    fn type_text(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", text])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn enter(&self) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "Enter"])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// The visible screen, trailing blank lines dropped.
    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// Types `line`, waits until the screen shows it (hint and all), then
    /// presses Enter and waits for the next prompt.
    fn run(&self, line: &str, prompts_before: usize) {
        self.type_text(line);
        assert!(
            wait_until(Duration::from_secs(10), || self
                .screen()
                .lines()
                .last()
                .is_some_and(|l| l.contains(line))),
            "typed {line:?}, screen:\n{}",
            self.screen()
        );
        self.enter();
        assert!(
            wait_until(Duration::from_secs(10), || self.prompts() > prompts_before),
            "no prompt after {line:?}, screen:\n{}",
            self.screen()
        );
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        match Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status()
        {
            Ok(s) if s.success() => {}
            other => eprintln!("tmux kill-session {}: {other:?}", self.name),
        }
    }
}

impl Session {
    /// How many prompts the screen shows.
    fn prompts(&self) -> usize {
        self.screen()
            .lines()
            .filter(|l| l.starts_with(&self.prompt))
            .count()
    }
}

/// The screen with the prompt's address and HELLO's connection id (which
/// differ between any two servers) made neutral.
fn neutral(screen: &str, addr: &str) -> String {
    screen
        .replace(addr, "HOST:PORT")
        .lines()
        .map(|l| match l.find("\"id\" => (integer) ") {
            Some(at) => format!("{}\"id\" => (integer) ID", &l[..at]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What typing `partial` shows as a hint, on a fresh line.
fn hint(s: &Session, partial: &str) -> String {
    s.type_text(partial);
    let mut last = String::new();
    // The hint is drawn right after the text; wait for the line to settle
    // on what was typed followed by something longer. (The line must show
    // this text: right after the previous hint's Ctrl-U the screen may
    // still show that hint.)
    let typed = format!("> {partial}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            last = s.screen().lines().last().unwrap_or_default().to_string();
            last.find(&typed)
                .is_some_and(|at| last.trim_end().len() > at + typed.len())
        }),
        "no hint after {partial:?}:\n{}",
        s.screen()
    );
    // Clear the line for the next command (Ctrl-U).
    let status = Command::new("tmux")
        .args(["send-keys", "-t", &s.name, "C-u"])
        .status()
        .expect("tmux send-keys");
    assert!(status.success());
    last
}

/// Runs `lines` in a redis-cli session against Redis and one against
/// ringkv, and asserts the two screens (and the completion hints for
/// `hints`) read the same; returns Redis's screen.
fn sessions_read_alike(test: &str, lines: &[&str], hints: &[&str]) -> String {
    let redis = RedisServer::start();
    let cluster = Cluster::start(&["ca", "cb", "cc"], &[]);
    let tag = format!("{}-{test}", std::process::id());
    let sessions = [
        (
            Session::start(&format!("ringkv-redis-{tag}"), &redis.addr),
            redis.addr.clone(),
        ),
        (
            Session::start(&format!("ringkv-ringkv-{tag}"), &cluster.nodes[0].client),
            cluster.nodes[0].client.clone(),
        ),
    ];
    let mut screens = Vec::new();
    for (s, addr) in &sessions {
        let hints: Vec<String> = hints.iter().map(|p| neutral(&hint(s, p), addr)).collect();
        for (i, line) in lines.iter().enumerate() {
            s.run(line, i + 1);
        }
        screens.push((hints, neutral(&s.screen(), addr)));
    }
    let (redis_hints, redis_screen) = &screens[0];
    let (ringkv_hints, ringkv_screen) = &screens[1];
    assert_eq!(ringkv_hints, redis_hints, "hints differ");
    assert_eq!(
        ringkv_screen, redis_screen,
        "the sessions read differently\n--- redis ---\n{redis_screen}\n--- ringkv ---\n{ringkv_screen}"
    );
    redis_screen.clone()
}

#[test]
fn an_interactive_resp3_session_reads_as_it_does_against_redis() {
    let lines = [
        "SET greeting hello",
        "GET greeting",
        "SET greeting again NX",
        "SET counter 41",
        "APPEND counter 2",
        "GET counter",
        "MGET greeting nosuchkey counter",
        "CONFIG GET maxmemory",
        "HELLO 3",
        "FLUSHALL",
        "GET greeting",
        "DBSIZE",
    ];
    let screen = sessions_read_alike("strings", &lines, &["SET ", "GET ", "GETRANGE "]);
    // The session really showed replies, not only prompts.
    assert!(screen.contains("\"hello\""), "{screen}");
    assert!(screen.contains("(nil)"), "{screen}");
}

/// Hashes, sets and counters as redis-cli shows them in RESP3: a map, a
/// set, integers, WRONGTYPE. (Fields are written in byte order, the order
/// ringkv lists them in and Redis lists a small hash in: insertion.)
#[test]
fn hashes_sets_and_counters_read_in_redis_cli_as_they_do_against_redis() {
    let lines = [
        "HSET user lang rust name ada",
        "HGETALL user",
        "HGET user name",
        "HINCRBY user visits 3",
        "HLEN user",
        "SADD tags rust",
        "SMEMBERS tags",
        "SISMEMBER tags go",
        "INCRBY hits 41",
        "INCR hits",
        "TYPE user",
        "TYPE tags",
        "GET user",
        "SADD user x",
    ];
    let screen = sessions_read_alike("types", &lines, &["HSET ", "SADD ", "HINCRBYFLOAT "]);
    assert!(screen.contains("1# \"lang\" => \"rust\""), "{screen}");
    assert!(screen.contains("WRONGTYPE"), "{screen}");
}
