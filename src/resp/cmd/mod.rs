//! Client commands: the table, and how one command is run.
//!
//! Every command ringkv has is one row of the table in [`table`]: its name,
//! Redis's arity, where its keys are, its flags, and the function that runs
//! it. [`dispatch`] is called once per command, in arrival order, with the
//! connection's state, and does what Redis's `processCommand` does before a
//! command runs, in the same order, so the errors come out the same:
//! unknown command, wrong number of arguments, authentication, ringkv's
//! size limits, and queuing inside MULTI. Then the row's handler runs.
//!
//! A handler that only touches the connection (AUTH, HELLO, CLIENT
//! SETNAME...) answers at once ([`Run::Now`]), so it takes effect before
//! the next pipelined command; one that touches data returns a future
//! ([`Run::Later`]) that runs its quorum reads and writes with the
//! connection settings of that moment. The connection runs those futures
//! concurrently and writes their replies in order (see `resp::order` for
//! when a command waits for earlier ones instead).
//!
//! The families live in their own files: `strings` (GET, SET and the
//! read-modify-write commands), `counters` (INCR...), `expire` (EXPIRE,
//! TTL...), `hashes` (HSET...), `sets` (SADD...), `keys` (DEL, EXISTS,
//! KEYS, SCAN, FLUSHALL...), `connection` (PING, AUTH, HELLO, RESET ...), `client` (CLIENT),
//! `server` (INFO, CONFIG, TIME, WAIT ...), `command` (COMMAND), `multi`
//! (MULTI, EXEC, WATCH) and `ringkv` (RINGKV).
//!
//! A command from a family ringkv does not have (lists, sorted sets,
//! streams, pub/sub, scripting...) gets Redis's unknown-command error with
//! the family named after it; Redis's own metadata says which family a
//! name belongs to (see `meta`).

mod access;
mod acl;
mod client;
mod command;
mod connection;
mod counters;
mod expire;
mod hashes;
mod keys;
pub mod meta;
pub mod multi;
mod ringkv;
mod scan;
mod server;
mod sets;
mod strings;
pub mod table;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Error;
use crate::node::shared::Shared;
use crate::resp::codec::Reply;
use crate::resp::conn::ConnState;
pub use table::{lookup, Spec, TABLE};

/// A reply that may still be computing.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// What running a command gave.
pub enum Run {
    /// The reply, already known.
    Now(Reply),
    /// A reply still being computed (a quorum read or write).
    Later(ReplyFuture),
}

impl Run {
    /// A future for a reply computed by `fut`. Inlined, so that the future
    /// is built in its box rather than moved there (it holds a whole
    /// quorum write's state: a copy costs hundreds of instructions).
    #[inline(always)]
    pub fn later(fut: impl Future<Output = Reply> + Send + 'static) -> Run {
        Run::Later(Box::pin(fut))
    }

    /// Waits for the reply, whichever kind it is.
    pub async fn reply(self) -> Reply {
        match self {
            Run::Now(reply) => reply,
            Run::Later(fut) => fut.await,
        }
    }
}

/// One command to run: the node, the connection, its arguments (the name
/// first) and its row of the table.
pub struct Call<'a> {
    /// The node's shared state.
    pub shared: &'a Arc<Shared>,
    /// The connection's state.
    pub conn: &'a mut ConnState,
    /// The arguments, the command's name first.
    pub args: Vec<Bytes>,
    /// The command's row of the table.
    pub spec: &'static Spec,
}

/// A command's implementation.
pub type Handler = fn(Call<'_>) -> Run;

/// The error reply for a failed request.
pub fn error_reply(e: &Error) -> Reply {
    match e {
        Error::Unavailable { .. } | Error::UnavailableStrict { .. } | Error::Partial { .. } => {
            Reply::error_code("UNAVAILABLE", e)
        }
        Error::Shutdown => Reply::error_code("SHUTDOWN", e),
        Error::Misconf(_) => Reply::error_code("MISCONF", e),
        Error::Oom => oom(),
        Error::WrongType => wrong_type(),
        _ => Reply::err(e),
    }
}

/// `ERR wrong number of arguments for '<name>' command`, with Redis's
/// lower-case full name (`client|setname` for a subcommand).
pub fn wrong_args(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{name}' command"))
}

/// Redis's error for a command on a key of another type.
pub fn wrong_type() -> Reply {
    Reply::error_code(
        "WRONGTYPE",
        "Operation against a key holding the wrong kind of value",
    )
}

/// Redis's `syntax error`.
pub fn syntax_error() -> Reply {
    Reply::err("syntax error")
}

/// Redis's error for an argument that must be an integer.
pub fn not_an_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// An argument as an `i64`, by Redis's rules (`string2ll`: optional `-`,
/// no `+`, no spaces, no leading zeros but `0` itself).
pub fn parse_int(arg: &[u8]) -> Option<i64> {
    if arg.is_empty() || arg.len() > 20 {
        return None;
    }
    let (negative, digits) = match arg.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, arg),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = i64::from(b - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
    }
    Some(value)
}

/// The name of an argument, upper-cased, for matching options.
pub fn upper(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

/// Redis's unknown-command error: the name as sent (at most 128 bytes),
/// then the first arguments, each quoted and followed by a space, until
/// the list reaches 128 bytes (each cut to what is left of those), as
/// Redis 7 words it; ringkv adds the family when the name is a Redis
/// command of a family it does not have.
pub fn unknown_command(args: &[Bytes]) -> Reply {
    let name = args.first().map_or(&[][..], |a| &a[..]);
    let mut listed: Vec<u8> = Vec::new();
    for a in args.iter().skip(1) {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        listed.push(b'\'');
        listed.extend_from_slice(&a[..a.len().min(room)]);
        listed.extend_from_slice(b"' ");
    }
    let mut text = format!(
        "unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(&name[..name.len().min(128)]),
        String::from_utf8_lossy(&listed)
    );
    if let Some(family) = meta::missing_family(name) {
        text.push_str(&format!("(ringkv has no {family})"));
    }
    Reply::err(text)
}

/// Looks up the subcommand `args[1]` of `family` (CLIENT, CONFIG...) in
/// `subs` (upper-case name, Redis's arity), answering Redis's errors for an
/// unknown one or a wrong number of arguments.
pub fn subcommand(
    args: &[Bytes],
    family: &str,
    subs: &'static [(&'static str, i32)],
) -> Result<&'static str, Reply> {
    let given = upper(&args[1]);
    let Some(&(name, arity)) = subs.iter().find(|(n, _)| *n == given) else {
        let shown = String::from_utf8_lossy(&args[1][..args[1].len().min(128)]);
        return Err(Reply::err(format!(
            "unknown subcommand '{shown}'. Try {family} HELP."
        )));
    };
    let n = args.len() as i64;
    let a = i64::from(arity);
    if (a >= 0 && n != a) || (a < 0 && n < -a) {
        return Err(wrong_args(&format!(
            "{}|{}",
            family.to_ascii_lowercase(),
            name.to_ascii_lowercase()
        )));
    }
    Ok(name)
}

/// A help text as Redis's `addReplyHelp` sends it: status lines.
pub fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::simple(*l)).collect())
}

/// Runs one command. `args[0]` is the command's name.
pub fn dispatch(shared: &Arc<Shared>, conn: &mut ConnState, args: Vec<Bytes>) -> Run {
    let spec = args.first().and_then(|name| lookup(name));
    dispatch_spec(shared, conn, spec, args)
}

/// [`dispatch`] for a caller that has already looked the command up
/// (`None`: not a command ringkv has).
pub fn dispatch_spec(
    shared: &Arc<Shared>,
    conn: &mut ConnState,
    spec: Option<&'static Spec>,
    args: Vec<Bytes>,
) -> Run {
    let Some(spec) = spec else {
        if args.is_empty() {
            return Run::Now(Reply::err("empty command"));
        }
        return Run::Now(refuse(conn, None, unknown_command(&args)));
    };
    if !spec.arity_ok(args.len()) {
        return Run::Now(refuse(conn, Some(spec), wrong_args(spec.name)));
    }
    if !conn.authed && !spec.has(table::NO_AUTH) {
        let noauth = Reply::error_code("NOAUTH", "Authentication required.");
        return Run::Now(refuse(conn, Some(spec), noauth));
    }
    if let Err(denied) = conn.current_perms(&shared.acl).check(spec, &args) {
        let reply = noperm(shared, conn, denied, false);
        return Run::Now(refuse(conn, Some(spec), reply));
    }
    if let Some(reply) = check_limits(shared, spec, &args) {
        return Run::Now(refuse(conn, Some(spec), reply));
    }
    // Past maxmemory, as Redis with `noeviction`: commands that may add
    // data are refused, deletes and reads go on; inside MULTI every
    // command but EXEC, DISCARD, QUIT and RESET is (queuing takes memory).
    if shared.over_maxmemory() {
        let queuing =
            conn.multi.is_some() && !matches!(spec.name, "exec" | "discard" | "quit" | "reset");
        if queuing || meta::denyoom(spec.name) {
            return Run::Now(refuse(conn, Some(spec), oom()));
        }
    }
    if let Some(multi) = conn.multi.as_mut() {
        if !spec.has(table::TRANSACTION_CONTROL) {
            multi.queued.push(args);
            conn.info.details().multi = multi.queued.len() as i64;
            return Run::Now(Reply::simple("QUEUED"));
        }
    }
    (spec.run)(Call {
        shared,
        conn,
        args,
        spec,
    })
}

/// Records a refusal in ACL LOG and answers Redis 7.0's NOPERM; `at_exec`:
/// a queued command refused when EXEC runs it (the user's rules changed
/// since it was queued), worded as Redis words that.
pub fn noperm(
    shared: &Shared,
    conn: &ConnState,
    denied: crate::acl::Denied,
    at_exec: bool,
) -> Reply {
    use crate::acl::log::{Event, Reason};
    let now = crate::clock::instant();
    let (reason, object, text) = match denied {
        crate::acl::Denied::Command(name) => {
            let text = format!("this user has no permissions to run the '{name}' command");
            (Reason::Command, Bytes::from(name), text)
        }
        crate::acl::Denied::Key(key) => {
            let text = "this user has no permissions to access one of the keys used as arguments";
            (Reason::Key, key, text.to_string())
        }
    };
    let text = match (at_exec, reason) {
        (false, _) => text,
        (true, r) => format!(
            "ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {}",
            if r == Reason::Key { "no permission to touch the specified keys" } else { "no permission to execute the command or subcommand" }
        ),
    };
    // Not in the literal below: its lock would be held through `describe`.
    let username = conn.info.details().user.clone();
    shared.acl.log.add(
        Event {
            reason,
            multi: conn.multi.is_some() || at_exec,
            object,
            username,
            client_info: client::describe(&conn.info, now),
        },
        now,
    );
    Reply::error_code("NOPERM", text)
}

/// Redis's reply to a command refused past `maxmemory`.
pub fn oom() -> Reply {
    Reply::error_code("OOM", "command not allowed when used memory > 'maxmemory'.")
}

/// A command refused before it ran: inside MULTI, the transaction is
/// marked so that EXEC fails (Redis's `flagTransaction`); a refused EXEC
/// itself ends the transaction, with Redis's `EXECABORT` wording.
fn refuse(conn: &mut ConnState, spec: Option<&Spec>, reply: Reply) -> Reply {
    if let Some(multi) = conn.multi.as_mut() {
        multi.dirty = true;
    }
    if spec.is_some_and(|s| s.name == "exec") {
        if conn.multi.take().is_some() {
            conn.info.details().multi = -1;
        }
        conn.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Reply::Error(text) = &reply {
            let why = text.strip_prefix("ERR ").unwrap_or(text);
            return Reply::error_code(
                "EXECABORT",
                format!("Transaction discarded because of: {why}"),
            );
        }
    }
    reply
}

/// Key and value size limits, checked before any work.
fn check_limits(shared: &Shared, spec: &Spec, args: &[Bytes]) -> Option<Reply> {
    let (max_key, max_value) = (shared.cfg.max_key_bytes, shared.cfg.max_value_bytes);
    if let Some(k) = spec.keys(args).find(|k| k.len() > max_key) {
        return Some(Reply::err(format!(
            "key of {} bytes exceeds max_key_bytes {max_key}",
            k.len()
        )));
    }
    if let Some(v) = spec.values(args).find(|v| v.len() > max_value) {
        return Some(Reply::err(format!(
            "value of {} bytes exceeds max_value_bytes {max_value}",
            v.len()
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_as_redis_parses_them() {
        for (text, want) in [
            ("0", Some(0)),
            ("-1", Some(-1)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("+1", None),
            ("01", None),
            ("-0", None),
            (" 1", None),
            ("1 ", None),
            ("", None),
            ("-", None),
            ("1.5", None),
        ] {
            assert_eq!(parse_int(text.as_bytes()), want, "{text:?}");
        }
    }

    #[test]
    fn unknown_commands_are_named_as_redis_names_them() {
        let args: Vec<Bytes> = ["FOO", "a", "b"].iter().map(|s| Bytes::from(*s)).collect();
        assert_eq!(
            unknown_command(&args),
            Reply::err("unknown command 'FOO', with args beginning with: 'a' 'b' ")
        );
        let args = vec![Bytes::from("foo")];
        assert_eq!(
            unknown_command(&args),
            Reply::err("unknown command 'foo', with args beginning with: ")
        );
    }
}
