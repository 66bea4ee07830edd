//! String commands: GET, SET, MGET, MSET, and the ones that read before
//! they write (SET NX/XX/GET, SETNX, GETSET, APPEND, SETRANGE, MSETNX) or
//! only read (STRLEN, GETRANGE).
//!
//! GET is a quorum read, SET a quorum write, MGET and MSET one of those per
//! key. A read-modify-write is a quorum read, then (if the command's rule
//! says so) a quorum write of the value computed from what was read,
//! stamped after the version read and carrying it, so that replicas
//! report a write that came in between (counted in
//! `ringkv_rmw_conflicts_total`). That is not Redis's atomicity: two
//! clients racing through different nodes may both see the key absent
//! and both get `OK` from `SET NX`, and then the later stamp wins
//! everywhere; README's "Conditional and read-modify-write commands"
//! says exactly what holds. With no concurrent writer of the key, the
//! result is Redis's. The replies, errors and edge cases follow Redis
//! 7.0's `t_string.c`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;

use super::access::{read_key, write_after};
use super::expire::StringOptions;
use super::{error_reply, not_an_integer, parse_int, Call, Run};
use crate::coordinator::Quorum;
use crate::node::shared::Shared;
use crate::resp::codec::Reply;
use crate::store::{Entry, Version};

/// Redis's largest string (`proto-max-bulk-len`, 512 MB).
const REDIS_MAX_STRING: u64 = 512 * 1024 * 1024;

/// GET key
pub fn get(call: Call<'_>) -> Run {
    let q = call.conn.quorum;
    let mut args = call.args;
    let key = args.swap_remove(1);
    let pos = crate::ring::Token::of(&key);
    let reply = |read: Result<Option<Entry>, crate::error::Error>| match string_of(read) {
        Ok((value, _)) => Reply::bulk_or_nil(value),
        Err(reply) => reply,
    };
    // Answered alone (a node without peers, say), when nothing before it
    // on the connection is still to write the key: no future at all.
    if call.conn.read_now {
        if let Some(read) = call.shared.read_alone(&key, &pos, q) {
            return Run::Now(reply(read));
        }
    }
    let shared = call.shared.clone();
    Run::later(async move { reply(shared.read_at(key, pos, q).await) })
}

/// A quorum read of `key` as a string: its value (`None` when absent,
/// expired included) and the version read, or Redis's WRONGTYPE error.
pub(super) async fn read_string(
    shared: &Shared,
    key: Bytes,
    q: Quorum,
) -> Result<(Option<Bytes>, Option<Version>), Reply> {
    string_of(shared.read(key, q).await)
}

/// A quorum read's result as [`read_string`] gives it.
fn string_of(
    read: Result<Option<Entry>, crate::error::Error>,
) -> Result<(Option<Bytes>, Option<Version>), Reply> {
    let entry = read.map_err(|e| error_reply(&e))?;
    let Some(entry) = entry else {
        return Ok((None, None));
    };
    let version = entry.version();
    let value = entry
        .into_string_value_with(crate::clock::wall_millis)
        .map_err(|_| super::wrong_type())?;
    Ok((value, Some(version)))
}

/// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms-ts|KEEPTTL]
pub fn set(call: Call<'_>) -> Run {
    let opts = match StringOptions::parse(&call.args, true) {
        Ok(o) => o,
        Err(reply) => return Run::Now(reply),
    };
    // The time is checked before the key is looked at, as in Redis.
    let deadline = match opts.deadline("set", crate::clock::wall_millis) {
        Ok(d) => d,
        Err(reply) => return Run::Now(reply),
    };
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let mut args = call.args;
    args.truncate(3);
    let value = args.swap_remove(2);
    let key = args.swap_remove(1);
    call.conn.last_write = Some(key.clone());
    if !(opts.nx || opts.xx || opts.get || opts.keepttl) {
        return Run::later(async move {
            let write = shared.write_with(key, q, None, |v| Entry::set_string(v, value, deadline));
            match write.await {
                Ok(_) => Reply::ok(),
                Err(e) => error_reply(&e),
            }
        });
    }
    let ttl = match (opts.keepttl, deadline) {
        (true, _) => NewTtl::Keep,
        (false, Some(at)) => NewTtl::At(at),
        (false, None) => NewTtl::None,
    };
    let uses = if opts.get {
        Uses::Value
    } else {
        Uses::Existence
    };
    Run::later(async move {
        rmw_as(&shared, key, q, ttl, uses, move |current| {
            let found = current.is_some();
            let old = Reply::bulk_or_nil(current.cloned());
            if (opts.nx && found) || (opts.xx && !found) {
                return (None, if opts.get { old } else { Reply::Nil });
            }
            (Some(value), if opts.get { old } else { Reply::ok() })
        })
        .await
    })
}

/// SETNX key value
pub fn setnx(call: Call<'_>) -> Run {
    let (shared, q, key, value) = key_and_value(call);
    Run::later(async move {
        rmw_as(
            &shared,
            key,
            q,
            NewTtl::None,
            Uses::Existence,
            move |current| match current {
                Some(_) => (None, Reply::Integer(0)),
                None => (Some(value), Reply::Integer(1)),
            },
        )
        .await
    })
}

/// GETSET key value
pub fn getset(call: Call<'_>) -> Run {
    let (shared, q, key, value) = key_and_value(call);
    Run::later(async move {
        rmw(&shared, key, q, NewTtl::None, move |current| {
            (Some(value), Reply::bulk_or_nil(current.cloned()))
        })
        .await
    })
}

/// APPEND key value
pub fn append(call: Call<'_>) -> Run {
    let max = call.shared.cfg.max_value_bytes;
    let (shared, q, key, value) = key_and_value(call);
    Run::later(async move {
        rmw(&shared, key, q, NewTtl::Keep, move |current| {
            let old = current.map_or(&[][..], |v| &v[..]);
            if let Err(reply) = check_length(old.len() as u64, value.len() as u64, max) {
                return (None, reply);
            }
            let mut joined = BytesMut::with_capacity(old.len() + value.len());
            joined.extend_from_slice(old);
            joined.extend_from_slice(&value);
            let len = joined.len() as i64;
            (Some(joined.freeze()), Reply::Integer(len))
        })
        .await
    })
}

/// INCRBYFLOAT key increment: a read-modify-write, with Redis's 80-bit
/// arithmetic and formatting (`values::float`). Two of them racing
/// through different nodes may both read the same value, and then the
/// later write wins: unlike INCRBY, a concurrent INCRBYFLOAT can be lost
/// (README, "Counters").
pub fn incrbyfloat(call: Call<'_>) -> Run {
    let (shared, q, key, incr) = key_and_value(call);
    Run::later(async move {
        rmw(
            &shared,
            key,
            q,
            NewTtl::Keep,
            move |current| match crate::values::float::incr_by_float(current.map(|v| &v[..]), &incr)
            {
                Ok(text) => {
                    let value = Bytes::from(text);
                    (Some(value.clone()), Reply::Bulk(value))
                }
                Err(e) => (None, Reply::err(e.message())),
            },
        )
        .await
    })
}

/// STRLEN key
pub fn strlen(call: Call<'_>) -> Run {
    read_then(call, |value| {
        Reply::Integer(value.map_or(0, |v| v.len() as i64))
    })
}

/// GETRANGE key start end (and its old name SUBSTR)
pub fn getrange(call: Call<'_>) -> Run {
    let (Some(start), Some(end)) = (parse_int(&call.args[2]), parse_int(&call.args[3])) else {
        return Run::Now(not_an_integer());
    };
    read_then(call, move |value| {
        let value = value.unwrap_or_default();
        Reply::Bulk(range_of(&value, start, end))
    })
}

/// The bytes GETRANGE answers, by Redis's rules for negative and
/// out-of-range indices.
fn range_of(value: &Bytes, start: i64, end: i64) -> Bytes {
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Bytes::new();
    }
    let start = if start < 0 { len + start } else { start }.max(0);
    let mut end = if end < 0 { len + end } else { end }.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Bytes::new();
    }
    value.slice(start as usize..=end as usize)
}

/// SETRANGE key offset value
pub fn setrange(call: Call<'_>) -> Run {
    let Some(offset) = parse_int(&call.args[2]) else {
        return Run::Now(not_an_integer());
    };
    if offset < 0 {
        return Run::Now(Reply::err("offset is out of range"));
    }
    let max = call.shared.cfg.max_value_bytes;
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let mut args = call.args;
    let value = args.swap_remove(3);
    let key = args.swap_remove(1);
    call.conn.last_write = Some(key.clone());
    Run::later(async move {
        rmw(&shared, key, q, NewTtl::Keep, move |current| {
            let old = current.map_or(&[][..], |v| &v[..]);
            if value.is_empty() {
                // Nothing to write: the length as it is (0 if absent).
                return (None, Reply::Integer(old.len() as i64));
            }
            if let Err(reply) = check_length(offset as u64, value.len() as u64, max) {
                return (None, reply);
            }
            let offset = offset as usize;
            let mut out = BytesMut::from(old);
            if out.len() < offset + value.len() {
                out.resize(offset + value.len(), 0);
            }
            out[offset..offset + value.len()].copy_from_slice(&value);
            let len = out.len() as i64;
            (Some(out.freeze()), Reply::Integer(len))
        })
        .await
    })
}

/// MGET key [key ...]
pub fn mget(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let args = call.args;
    Run::later(async move {
        let reads = args[1..].iter().map(|k| shared.read(k.clone(), q));
        let mut values = Vec::with_capacity(args.len() - 1);
        for result in join_all(reads).await {
            // A key of another type reads as nil in MGET, as in Redis.
            let now = crate::clock::wall_millis();
            match result {
                Ok(e) => values.push(Reply::bulk_or_nil(
                    e.and_then(|e| e.string_value(now).ok().flatten()),
                )),
                Err(e) => return error_reply(&e),
            }
        }
        Reply::Array(values)
    })
}

/// MSET key value [key value ...]
pub fn mset(call: Call<'_>) -> Run {
    let (shared, q, args) = match pairs(call, "mset") {
        Ok(p) => p,
        Err(reply) => return Run::Now(reply),
    };
    Run::later(async move {
        let writes = args[1..]
            .chunks(2)
            .map(|kv| shared.write(kv[0].clone(), Some(kv[1].clone()), q));
        first_error(join_all(writes).await).unwrap_or_else(Reply::ok)
    })
}

/// MSETNX key value [key value ...]: quorum reads of every key; if none
/// exists, a write of each, stamped after what was read of it. Not atomic
/// across keys: a failed write leaves the others written, as a failed
/// MSET does.
pub fn msetnx(call: Call<'_>) -> Run {
    let (shared, q, args) = match pairs(call, "msetnx") {
        Ok(p) => p,
        Err(reply) => return Run::Now(reply),
    };
    Run::later(async move {
        let pairs: Vec<(Bytes, Bytes)> = args[1..]
            .chunks(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect();
        let reads = pairs.iter().map(|(k, _)| shared.read(k.clone(), q));
        let mut read = Vec::with_capacity(pairs.len());
        let now = crate::clock::wall_millis();
        for result in join_all(reads).await {
            match result {
                // A key of any type that exists stops MSETNX, as in Redis.
                Ok(Some(e)) if e.exists(now) => return Reply::Integer(0),
                Ok(e) => read.push(e.map(|e| e.version())),
                Err(e) => return error_reply(&e),
            }
        }
        let writes = pairs
            .into_iter()
            .zip(read)
            .map(|((k, v), seen)| shared.write_after(k, Some(v), q, seen));
        first_error(join_all(writes).await).unwrap_or(Reply::Integer(1))
    })
}

/// The node, quorum and arguments of a command of key-value pairs (MSET,
/// MSETNX), its last key noted as the connection's last write; Redis's
/// arity error when a value is missing.
fn pairs(call: Call<'_>, name: &str) -> Result<(Arc<Shared>, Quorum, Vec<Bytes>), Reply> {
    if call.args.len() % 2 == 0 {
        return Err(super::wrong_args(name));
    }
    let args = call.args;
    call.conn.last_write = args.get(args.len() - 2).cloned();
    Ok((call.shared.clone(), call.conn.quorum, args))
}

/// The error reply of the first failed request among `results`.
fn first_error<T>(results: Vec<crate::error::Result<T>>) -> Option<Reply> {
    results
        .iter()
        .find_map(|r| r.as_ref().err().map(error_reply))
}

/// The node, quorum, key (`args[1]`) and value (`args[2]`) of a call, the
/// key noted as the connection's last write.
fn key_and_value(call: Call<'_>) -> (Arc<Shared>, Quorum, Bytes, Bytes) {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let mut args = call.args;
    args.truncate(3);
    let value = args.swap_remove(2);
    let key = args.swap_remove(1);
    call.conn.last_write = Some(key.clone());
    (shared, q, key, value)
}

/// A quorum read of `args[1]`, answered by `f` from its live value.
fn read_then(call: Call<'_>, f: impl FnOnce(Option<Bytes>) -> Reply + Send + 'static) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let mut args = call.args;
    let key = args.swap_remove(1);
    Run::later(async move {
        match read_string(&shared, key, q).await {
            Ok((value, _)) => f(value),
            Err(reply) => reply,
        }
    })
}

/// The deadline a string rewrite leaves on its key.
#[derive(Clone, Copy, Debug)]
enum NewTtl {
    /// None: a SET replaces the value and its expiry.
    None,
    /// The key's own (APPEND, SETRANGE, SET KEEPTTL).
    Keep,
    /// This one (SET NX EX ...).
    At(u64),
}

/// A read-modify-write of `key`: a quorum read, then `f` decides from the
/// live value (if any) what to write (`None`: nothing) and the reply; the
/// write is stamped after the version read (see the module doc), and
/// leaves the deadline `ttl` says.
async fn rmw(
    shared: &Shared,
    key: Bytes,
    q: Quorum,
    ttl: NewTtl,
    f: impl FnOnce(Option<&Bytes>) -> (Option<Bytes>, Reply),
) -> Reply {
    rmw_as(shared, key, q, ttl, Uses::Value, f).await
}

/// What a read-modify-write uses of the key it read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Uses {
    /// Its string value: a key of another type is WRONGTYPE.
    Value,
    /// Only whether it exists (SET NX or XX without GET, SETNX): a key of
    /// any type counts, as in Redis, and is overwritten by the string.
    Existence,
}

/// [`rmw`], with what the command uses of the key (see [`Uses`]); for
/// `Uses::Existence`, `f` sees an existing key of another type as an
/// empty string.
async fn rmw_as(
    shared: &Shared,
    key: Bytes,
    q: Quorum,
    ttl: NewTtl,
    uses: Uses,
    f: impl FnOnce(Option<&Bytes>) -> (Option<Bytes>, Reply),
) -> Reply {
    let found = match read_key(shared, key.clone(), q).await {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let current = match (found.string(), uses) {
        (Ok(current), _) => current,
        (Err(_), Uses::Existence) => Some(Bytes::new()),
        (Err(reply), Uses::Value) => return reply,
    };
    let (write, reply) = f(current.as_ref());
    if let Some(value) = write {
        let deadline = match ttl {
            NewTtl::None => None,
            NewTtl::Keep => found.deadline(),
            NewTtl::At(at) => Some(at),
        };
        let written = write_after(shared, key, q, &found, |v| {
            Entry::set_string(v, value, deadline)
        });
        if let Err(reply) = written.await {
            return reply;
        }
    }
    reply
}

/// Refuses a string that would grow past Redis's 512 MB (with Redis's
/// words) or past `max_value_bytes`.
fn check_length(size: u64, append: u64, max: usize) -> Result<(), Reply> {
    let total = size.saturating_add(append);
    if total > REDIS_MAX_STRING {
        return Err(Reply::err(
            "string exceeds maximum allowed size (proto-max-bulk-len)",
        ));
    }
    if total > max as u64 {
        return Err(Reply::err(format!(
            "value of {total} bytes exceeds max_value_bytes {max}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getrange_follows_redis_index_rules() {
        let v = Bytes::from_static(b"Hello World");
        let r = |s, e| range_of(&v, s, e);
        assert_eq!(r(0, 4), "Hello");
        assert_eq!(r(-3, -1), "rld");
        assert_eq!(r(0, -1), "Hello World");
        assert_eq!(r(10, 100), "d");
        assert_eq!(r(5, 3), "");
        assert_eq!(r(-1, -5), "");
        assert_eq!(r(-100, 2), "Hel");
        assert_eq!(range_of(&Bytes::new(), 0, -1), "");
    }
}
