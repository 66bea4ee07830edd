//! What each client command does.
//!
//! [`dispatch`] is called once per command, in arrival order, with the
//! connection's state. Commands that only touch the connection (AUTH,
//! SELECT, CLIENT, RINGKV QUORUM...) run right there, so they take effect
//! before the next pipelined command is read; commands that touch data
//! return a future that runs the quorum read or write, capturing the
//! connection settings of that moment. The server runs those futures
//! concurrently and writes their replies in order.
//!
//! Data commands map onto the coordinator: GET is a quorum read, SET a
//! quorum write, DEL a tombstone write, MGET/MSET/EXISTS fan out one
//! request per key, and KEYS/SCAN/DBSIZE gather the keys of every node.
//!
//! Deliberately left out: data types other than strings, TTLs, transactions
//! and pub/sub. They get a clear "unknown command" error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;

use crate::coordinator::Quorum;
use crate::error::Error;
use crate::node::shared::Shared;
use crate::resp::codec::Reply;
use crate::resp::ringkv_cmd;

/// A reply that may still be computing.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Per-connection settings.
#[derive(Clone, Debug)]
pub struct ConnState {
    /// AUTH succeeded (or no password is required).
    pub authed: bool,
    /// Quorums for this connection's requests.
    pub quorum: Quorum,
    /// CLIENT SETNAME.
    pub name: Option<Bytes>,
    /// QUIT was received: close after the replies so far.
    pub closing: bool,
    /// Connection id (CLIENT ID).
    pub id: u64,
}

fn ready(reply: Reply) -> ReplyFuture {
    Box::pin(std::future::ready(reply))
}

/// The error reply for a failed request.
pub fn error_reply(e: &Error) -> Reply {
    match e {
        Error::Unavailable { .. } => Reply::error_code("UNAVAILABLE", e),
        Error::Shutdown => Reply::error_code("SHUTDOWN", e),
        _ => Reply::err(e),
    }
}

fn wrong_args(cmd: &str) -> Reply {
    Reply::err(format!(
        "wrong number of arguments for '{}' command",
        cmd.to_ascii_lowercase()
    ))
}

/// Runs one command. `args[0]` is the command name.
pub fn dispatch(shared: &Arc<Shared>, conn: &mut ConnState, args: Vec<Bytes>) -> ReplyFuture {
    let Some(first) = args.first() else {
        return ready(Reply::err("empty command"));
    };
    // Upper-cased on the stack: no allocation per command. Names longer
    // than any command we know fall through to "unknown command".
    let mut upper = [0u8; 16];
    let cmd = match upper.get_mut(..first.len()) {
        Some(dst) => {
            dst.copy_from_slice(first);
            dst.make_ascii_uppercase();
            std::str::from_utf8(dst).unwrap_or("")
        }
        None => "",
    };
    let n = args.len();
    if !conn.authed && !matches!(cmd, "AUTH" | "PING" | "QUIT" | "HELLO") {
        return ready(Reply::error_code("NOAUTH", "Authentication required."));
    }
    let arity_ok = match cmd {
        "PING" => n <= 2,
        "ECHO" | "GET" | "DBSIZE" | "SELECT" | "KEYS" => n == cmd_arity(cmd),
        "SET" => n >= 3,
        "DEL" | "EXISTS" | "MGET" => n >= 2,
        "MSET" => n >= 3 && n % 2 == 1,
        "AUTH" => n == 2 || n == 3,
        "SCAN" => n >= 2,
        _ => true,
    };
    if !arity_ok {
        return ready(wrong_args(cmd));
    }
    if let Some(reply) = check_limits(shared, cmd, &args) {
        return ready(reply);
    }
    let shared = shared.clone();
    let q = conn.quorum;
    let exists = cmd == "EXISTS";
    match cmd {
        "PING" => ready(match args.get(1) {
            Some(msg) => Reply::Bulk(msg.clone()),
            None => Reply::simple("PONG"),
        }),
        "ECHO" => ready(Reply::Bulk(args[1].clone())),
        "QUIT" => {
            conn.closing = true;
            ready(Reply::ok())
        }
        "AUTH" => ready(auth(&shared, conn, &args)),
        "SELECT" => ready(match &args[1][..] {
            b"0" => Reply::ok(),
            _ => Reply::err("DB index is out of range (ringkv has only database 0)"),
        }),
        "HELLO" => ready(hello(conn, &args)),
        "CLIENT" => ready(client(conn, &args)),
        "CONFIG" => ready(config(&args)),
        "COMMAND" => ready(command(&args)),
        "INFO" => ready(crate::resp::ringkv_cmd::info(&shared)),
        "RINGKV" => ready(ringkv_cmd::run(&shared, conn, &args)),
        "GET" => Box::pin(async move {
            match shared.read(args[1].clone(), q).await {
                Ok(Some(e)) => e.value.map_or(Reply::Nil, Reply::Bulk),
                Ok(None) => Reply::Nil,
                Err(e) => error_reply(&e),
            }
        }),
        "SET" => {
            if n > 3 {
                let opt = String::from_utf8_lossy(&args[3]).to_ascii_uppercase();
                return ready(Reply::err(format!(
                    "SET option {opt} is not supported by ringkv (no TTLs or conditional sets)"
                )));
            }
            Box::pin(async move {
                let mut args = args.into_iter().skip(1);
                let (key, value) = (
                    args.next().unwrap_or_default(),
                    args.next().unwrap_or_default(),
                );
                match shared.write(key, Some(value), q).await {
                    Ok(_) => Reply::ok(),
                    Err(e) => error_reply(&e),
                }
            })
        }
        "DEL" => Box::pin(async move {
            let writes = args[1..].iter().map(|k| shared.write(k.clone(), None, q));
            let mut removed = 0;
            for result in join_all(writes).await {
                match result {
                    Ok(o) => removed += i64::from(o.was_live),
                    Err(e) => return error_reply(&e),
                }
            }
            Reply::Integer(removed)
        }),
        "EXISTS" | "MGET" => Box::pin(async move {
            let reads = args[1..].iter().map(|k| shared.read(k.clone(), q));
            let mut values = Vec::with_capacity(args.len() - 1);
            for result in join_all(reads).await {
                match result {
                    Ok(e) => values.push(e.and_then(|e| e.value)),
                    Err(e) => return error_reply(&e),
                }
            }
            if exists {
                Reply::Integer(values.iter().filter(|v| v.is_some()).count() as i64)
            } else {
                Reply::Array(
                    values
                        .into_iter()
                        .map(|v| v.map_or(Reply::Nil, Reply::Bulk))
                        .collect(),
                )
            }
        }),
        "MSET" => Box::pin(async move {
            let writes = args[1..]
                .chunks(2)
                .map(|kv| shared.write(kv[0].clone(), Some(kv[1].clone()), q));
            for result in join_all(writes).await {
                if let Err(e) = result {
                    return error_reply(&e);
                }
            }
            Reply::ok()
        }),
        "DBSIZE" => Box::pin(async move {
            match shared.keys(Bytes::from_static(b"*")).await {
                Ok(keys) => Reply::Integer(keys.len() as i64),
                Err(e) => error_reply(&e),
            }
        }),
        "KEYS" => Box::pin(async move {
            match shared.keys(args[1].clone()).await {
                Ok(keys) => Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
                Err(e) => error_reply(&e),
            }
        }),
        "SCAN" => Box::pin(async move { scan(&shared, &args).await }),
        _ => ready(Reply::err(format!(
            "unknown command '{}', with args beginning with: {}",
            String::from_utf8_lossy(first),
            args[1..]
                .iter()
                .take(3)
                .map(|a| format!("'{}' ", String::from_utf8_lossy(a)))
                .collect::<String>()
        ))),
    }
}

fn cmd_arity(cmd: &str) -> usize {
    match cmd {
        "DBSIZE" => 1,
        _ => 2,
    }
}

/// Key and value size limits, checked before any work.
fn check_limits(shared: &Shared, cmd: &str, args: &[Bytes]) -> Option<Reply> {
    let (max_key, max_value) = (shared.cfg.max_key_bytes, shared.cfg.max_value_bytes);
    // Iterators over the arguments, not vectors: this runs for every command.
    let (mut keys, mut values) = match cmd {
        "GET" | "DEL" | "EXISTS" | "MGET" => {
            (args[1..].iter().step_by(1), args[..0].iter().step_by(1))
        }
        "SET" => (args[1..2].iter().step_by(1), args[2..3].iter().step_by(1)),
        "MSET" => (args[1..].iter().step_by(2), args[2..].iter().step_by(2)),
        _ => return None,
    };
    if let Some(k) = keys.find(|k| k.len() > max_key) {
        return Some(Reply::err(format!(
            "key of {} bytes exceeds max_key_bytes {max_key}",
            k.len()
        )));
    }
    if let Some(v) = values.find(|v| v.len() > max_value) {
        return Some(Reply::err(format!(
            "value of {} bytes exceeds max_value_bytes {max_value}",
            v.len()
        )));
    }
    None
}

fn auth(shared: &Shared, conn: &mut ConnState, args: &[Bytes]) -> Reply {
    let Some(expected) = &shared.cfg.requirepass else {
        return Reply::err("AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
    };
    let given = args.last().map(|b| &b[..]).unwrap_or_default();
    let user_ok = args.len() == 2 || &args[1][..] == b"default";
    if user_ok && crate::auth::password_matches(given, expected.as_bytes()) {
        conn.authed = true;
        Reply::ok()
    } else {
        // Logged, but only a few lines per window: a password-guessing
        // client must not be able to flood the log.
        let now = std::time::Instant::now();
        if let Some(held_back) = crate::auth::CLIENT_AUTH_FAILURES.check(now) {
            tracing::warn!(
                conn = conn.id,
                held_back,
                "client AUTH failed: wrong password"
            );
        }
        Reply::error_code(
            "WRONGPASS",
            "invalid username-password pair or user is disabled.",
        )
    }
}

fn hello(conn: &mut ConnState, args: &[Bytes]) -> Reply {
    if let Some(v) = args.get(1) {
        if &v[..] != b"2" {
            return Reply::error_code(
                "NOPROTO",
                "unsupported protocol version (ringkv speaks RESP2)",
            );
        }
    }
    if !conn.authed {
        return Reply::error_code("NOAUTH", "HELLO must be called with the client already authenticated, or with AUTH <user> <pass>");
    }
    let kv = |k: &'static str, v: Reply| [Reply::simple(k), v];
    Reply::Array(
        [
            kv("server", Reply::bulk("ringkv")),
            kv("version", Reply::bulk(env!("CARGO_PKG_VERSION"))),
            kv("proto", Reply::Integer(2)),
            kv("id", Reply::Integer(conn.id as i64)),
            kv("mode", Reply::bulk("standalone")),
            kv("role", Reply::bulk("master")),
            kv("modules", Reply::Array(vec![])),
        ]
        .into_iter()
        .flatten()
        .collect(),
    )
}

fn client(conn: &mut ConnState, args: &[Bytes]) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
    match (sub.as_deref(), args.len()) {
        (Some("SETNAME"), 3) => {
            conn.name = Some(args[2].clone());
            Reply::ok()
        }
        (Some("GETNAME"), 2) => conn.name.clone().map_or(Reply::Nil, Reply::Bulk),
        (Some("SETINFO"), 4) => Reply::ok(),
        (Some("ID"), 2) => Reply::Integer(conn.id as i64),
        _ => Reply::err("CLIENT supports SETNAME, GETNAME, SETINFO and ID"),
    }
}

fn config(args: &[Bytes]) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
    match sub.as_deref() {
        Some("GET") if args.len() >= 3 => {
            // Answer the settings tools commonly probe; the rest are empty.
            let known: [(&str, &str); 3] = [("save", ""), ("appendonly", "no"), ("databases", "1")];
            let mut out = Vec::new();
            for pattern in &args[2..] {
                for (k, v) in known {
                    if crate::resp::glob::matches(&pattern.to_ascii_lowercase(), k.as_bytes()) {
                        out.push(Reply::bulk(k));
                        out.push(Reply::bulk(v));
                    }
                }
            }
            Reply::Array(out)
        }
        Some("RESETSTAT") => Reply::ok(),
        _ => {
            Reply::err("CONFIG supports GET and RESETSTAT; ringkv settings live in its config file")
        }
    }
}

fn command(args: &[Bytes]) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
    match sub.as_deref() {
        Some("COUNT") => Reply::Integer(0),
        _ => Reply::Array(vec![]),
    }
}

/// SCAN over the cluster's keys: the cursor is an index into the sorted
/// key list, so a full iteration returns every key present throughout it.
async fn scan(shared: &Shared, args: &[Bytes]) -> Reply {
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    else {
        return Reply::err("invalid cursor");
    };
    let mut pattern = Bytes::from_static(b"*");
    let mut count = 10usize;
    let mut rest = args[2..].chunks(2);
    for pair in rest.by_ref() {
        let [opt, val] = pair else {
            return Reply::err("syntax error");
        };
        match String::from_utf8_lossy(opt).to_ascii_uppercase().as_str() {
            "MATCH" => pattern = val.clone(),
            "COUNT" => match std::str::from_utf8(val).ok().and_then(|s| s.parse().ok()) {
                Some(c) if c > 0 => count = c,
                _ => return Reply::err("value is not an integer or out of range"),
            },
            _ => return Reply::err("syntax error"),
        }
    }
    match shared.keys(pattern).await {
        Ok(keys) => {
            let end = (cursor + count).min(keys.len());
            let next = if end >= keys.len() { 0 } else { end };
            let page = keys.get(cursor..end).unwrap_or_default();
            Reply::Array(vec![
                Reply::bulk(next.to_string()),
                Reply::Array(page.iter().cloned().map(Reply::Bulk).collect()),
            ])
        }
        Err(e) => error_reply(&e),
    }
}
