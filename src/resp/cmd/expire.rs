//! Expiry: SET's and GETEX's time options, SETEX and PSETEX, the EXPIRE
//! family, TTL and its variants, PERSIST, GETEX and GETDEL.
//!
//! A deadline is an absolute time (ms since the epoch) stored with the key
//! in its own last-writer-wins register, apart from the value (see
//! `values`), so every replica agrees when the key dies, and changing only
//! the deadline never loses a concurrent write of the value. Each node
//! judges it against its own wall clock. Relative times (EX, PX, EXPIRE)
//! are made absolute by the coordinating node's clock when the command
//! runs, as Redis makes them absolute when it propagates them.
//!
//! Parsing, validation and replies follow Redis 7.0's `t_string.c` and
//! `expire.c`, in their order, so the same error comes first.

use bytes::Bytes;

use super::access::{read_key, read_string_key, write_after};
use super::{error_reply, not_an_integer, parse_int, syntax_error, Call, Run};
use crate::resp::codec::Reply;
use crate::store::Entry;
use crate::values::Want;

/// How a time argument is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    /// EX: seconds from now.
    Seconds,
    /// PX: milliseconds from now.
    Millis,
    /// EXAT: a Unix time in seconds.
    UnixSeconds,
    /// PXAT: a Unix time in milliseconds.
    UnixMillis,
}

/// Redis's error for a time that is not positive or overflows.
fn invalid_expire(cmd: &str) -> Reply {
    Reply::err(format!("invalid expire time in '{cmd}' command"))
}

/// The deadline (ms since the epoch) a SET or GETEX time argument gives,
/// as Redis's `getExpireMillisecondsOrReply` computes and checks it:
/// the number must be positive and the result must not overflow.
pub fn deadline_of(arg: &[u8], how: TimeArg, cmd: &str, now: u64) -> Result<u64, Reply> {
    let n = parse_int(arg).ok_or_else(not_an_integer)?;
    let seconds = matches!(how, TimeArg::Seconds | TimeArg::UnixSeconds);
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(invalid_expire(cmd));
    }
    let ms = if seconds { n * 1000 } else { n };
    let at = match how {
        TimeArg::Seconds | TimeArg::Millis => ms.checked_add(now as i64),
        TimeArg::UnixSeconds | TimeArg::UnixMillis => Some(ms),
    };
    match at {
        Some(at) if at > 0 => Ok(at as u64),
        _ => Err(invalid_expire(cmd)),
    }
}

/// The options of SET (from `args[3]`) or GETEX (from `args[2]`), as
/// Redis's `parseExtendedStringArgumentsOrReply` accepts them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StringOptions {
    /// NX: only if absent.
    pub nx: bool,
    /// XX: only if present.
    pub xx: bool,
    /// GET: answer the old value.
    pub get: bool,
    /// KEEPTTL: keep the key's deadline.
    pub keepttl: bool,
    /// PERSIST (GETEX): remove the deadline.
    pub persist: bool,
    /// EX, PX, EXAT or PXAT and its argument.
    pub expire: Option<(TimeArg, Bytes)>,
}

impl StringOptions {
    /// Parses SET's options (`set`) or GETEX's.
    pub fn parse(args: &[Bytes], set: bool) -> Result<StringOptions, Reply> {
        let mut o = StringOptions::default();
        let mut j = if set { 3 } else { 2 };
        while j < args.len() {
            let opt = super::upper(&args[j]);
            let next = args.get(j + 1);
            let timed = |o: &StringOptions, allowed: TimeArg| {
                !o.keepttl
                    && !o.persist
                    && o.expire.as_ref().is_none_or(|(t, _)| *t == allowed)
                    && next.is_some()
            };
            let time = match opt.as_str() {
                "EX" => Some(TimeArg::Seconds),
                "PX" => Some(TimeArg::Millis),
                "EXAT" => Some(TimeArg::UnixSeconds),
                "PXAT" => Some(TimeArg::UnixMillis),
                _ => None,
            };
            match (opt.as_str(), time) {
                ("NX", _) if set && !o.xx => o.nx = true,
                ("XX", _) if set && !o.nx => o.xx = true,
                ("GET", _) if set => o.get = true,
                ("KEEPTTL", _) if set && !o.persist && o.expire.is_none() => o.keepttl = true,
                ("PERSIST", _) if !set && o.expire.is_none() && !o.keepttl => o.persist = true,
                (_, Some(how)) if timed(&o, how) => {
                    o.expire = Some((how, next.expect("checked").clone()));
                    j += 1;
                }
                _ => return Err(syntax_error()),
            }
            j += 1;
        }
        Ok(o)
    }

    /// The deadline the time option gives, if any (see [`deadline_of`]);
    /// the clock (`now`) is read only when there is one.
    pub fn deadline(&self, cmd: &str, now: impl FnOnce() -> u64) -> Result<Option<u64>, Reply> {
        self.expire
            .as_ref()
            .map(|(how, arg)| deadline_of(arg, *how, cmd, now()))
            .transpose()
    }
}

/// SETEX key seconds value
pub fn setex(call: Call<'_>) -> Run {
    set_with_expiry(call, TimeArg::Seconds, "setex")
}

/// PSETEX key milliseconds value
pub fn psetex(call: Call<'_>) -> Run {
    set_with_expiry(call, TimeArg::Millis, "psetex")
}

fn set_with_expiry(call: Call<'_>, how: TimeArg, cmd: &str) -> Run {
    let now = crate::clock::wall_millis();
    let deadline = match deadline_of(&call.args[2], how, cmd, now) {
        Ok(d) => d,
        Err(reply) => return Run::Now(reply),
    };
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let mut args = call.args;
    let value = args.swap_remove(3);
    let key = args.swap_remove(1);
    call.conn.last_write = Some(key.clone());
    Run::later(async move {
        let write = shared.write_with(key, q, None, |v| {
            Entry::set_string(v, value, Some(deadline))
        });
        match write.await {
            Ok(_) => Reply::ok(),
            Err(e) => error_reply(&e),
        }
    })
}

/// What EXPIRE's NX, XX, GT and LT ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Conditions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl Conditions {
    /// Redis's `parseExtendedExpireArgumentsOrReply`.
    fn parse(args: &[Bytes]) -> Result<Conditions, Reply> {
        let mut c = Conditions::default();
        for arg in args {
            match super::upper(arg).as_str() {
                "NX" => c.nx = true,
                "XX" => c.xx = true,
                "GT" => c.gt = true,
                "LT" => c.lt = true,
                _ => {
                    return Err(Reply::err(format!(
                        "Unsupported option {}",
                        String::from_utf8_lossy(arg)
                    )))
                }
            }
        }
        if c.nx && (c.xx || c.gt || c.lt) {
            return Err(Reply::err(
                "NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if c.gt && c.lt {
            return Err(Reply::err(
                "GT and LT options at the same time are not compatible",
            ));
        }
        Ok(c)
    }

    /// Whether a new deadline `when` may replace `current` (`None`: the
    /// key is persistent, an infinite TTL to GT and LT).
    fn allow(self, current: Option<u64>, when: i64) -> bool {
        let current = current.map(|d| d as i64);
        !((self.nx && current.is_some())
            || (self.xx && current.is_none())
            || (self.gt && current.is_none_or(|c| when <= c))
            || (self.lt && current.is_some_and(|c| when >= c)))
    }
}

/// EXPIRE key seconds [NX|XX|GT|LT]
pub fn expire(call: Call<'_>) -> Run {
    expire_generic(call, true, true, "expire")
}

/// PEXPIRE key milliseconds [NX|XX|GT|LT]
pub fn pexpire(call: Call<'_>) -> Run {
    expire_generic(call, true, false, "pexpire")
}

/// EXPIREAT key unix-time-seconds [NX|XX|GT|LT]
pub fn expireat(call: Call<'_>) -> Run {
    expire_generic(call, false, true, "expireat")
}

/// PEXPIREAT key unix-time-milliseconds [NX|XX|GT|LT]
pub fn pexpireat(call: Call<'_>) -> Run {
    expire_generic(call, false, false, "pexpireat")
}

/// Redis's `expireGenericCommand`: a time in the past deletes the key.
fn expire_generic(call: Call<'_>, relative: bool, seconds: bool, cmd: &str) -> Run {
    let cond = match Conditions::parse(&call.args[3..]) {
        Ok(c) => c,
        Err(reply) => return Run::Now(reply),
    };
    let Some(mut when) = parse_int(&call.args[2]) else {
        return Run::Now(not_an_integer());
    };
    if seconds {
        when = match when.checked_mul(1000) {
            Some(ms) => ms,
            None => return Run::Now(invalid_expire(cmd)),
        };
    }
    let base = if relative {
        crate::clock::wall_millis() as i64
    } else {
        0
    };
    let Some(when) = when.checked_add(base) else {
        return Run::Now(invalid_expire(cmd));
    };
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let key = call.args[1].clone();
    call.conn.last_write = Some(key.clone());
    Run::later(async move {
        let found = match read_key(&shared, key.clone(), q).await {
            Ok(f) => f,
            Err(reply) => return reply,
        };
        if found.live().is_none() || !cond.allow(found.deadline(), when) {
            return Reply::Integer(0);
        }
        let written = if when <= found.now as i64 {
            write_after(&shared, key, q, &found, Entry::tombstone).await
        } else {
            let at = when as u64;
            write_after(&shared, key, q, &found, |v| Entry::set_expiry(v, Some(at))).await
        };
        match written {
            Ok(_) => Reply::Integer(1),
            Err(reply) => reply,
        }
    })
}

/// TTL key
pub fn ttl(call: Call<'_>) -> Run {
    ttl_generic(call, false, false)
}

/// PTTL key
pub fn pttl(call: Call<'_>) -> Run {
    ttl_generic(call, true, false)
}

/// EXPIRETIME key
pub fn expiretime(call: Call<'_>) -> Run {
    ttl_generic(call, false, true)
}

/// PEXPIRETIME key
pub fn pexpiretime(call: Call<'_>) -> Run {
    ttl_generic(call, true, true)
}

/// Redis's `ttlGenericCommand`: -2 for no key, -1 for no deadline. Reads
/// only the key's head (a hash's or set's elements stay where they are).
fn ttl_generic(call: Call<'_>, ms: bool, absolute: bool) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let key = call.args[1].clone();
    Run::later(async move {
        let part = match shared.read_part(key, Want::Head, q).await {
            Ok(p) => p,
            Err(e) => return error_reply(&e),
        };
        let now = crate::clock::wall_millis();
        let deadline = match part.filter(|p| p.kind(now).is_some()) {
            None => return Reply::Integer(-2),
            Some(p) => p.rich.ttl.and_then(|t| t.value),
        };
        Reply::Integer(ttl_reply(deadline, now, ms, absolute))
    })
}

/// TTL's reply for a key that exists, with `deadline` (if any) at `now`.
fn ttl_reply(deadline: Option<u64>, now: u64, ms: bool, absolute: bool) -> i64 {
    let Some(deadline) = deadline else {
        return -1;
    };
    let deadline = deadline as i64;
    let ttl = if absolute {
        deadline
    } else {
        (deadline - now as i64).max(0)
    };
    if ms {
        ttl
    } else {
        (ttl + 500) / 1000
    }
}

/// PERSIST key
pub fn persist(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let key = call.args[1].clone();
    call.conn.last_write = Some(key.clone());
    Run::later(async move {
        let found = match read_key(&shared, key.clone(), q).await {
            Ok(f) => f,
            Err(reply) => return reply,
        };
        if found.deadline().is_none() {
            return Reply::Integer(0);
        }
        match write_after(&shared, key, q, &found, |v| Entry::set_expiry(v, None)).await {
            Ok(_) => Reply::Integer(1),
            Err(reply) => reply,
        }
    })
}

/// GETEX key [EX s|PX ms|EXAT ts|PXAT ms-ts|PERSIST]
pub fn getex(call: Call<'_>) -> Run {
    let opts = match StringOptions::parse(&call.args, false) {
        Ok(o) => o,
        Err(reply) => return Run::Now(reply),
    };
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let key = call.args[1].clone();
    if opts.expire.is_some() || opts.persist {
        call.conn.last_write = Some(key.clone());
    }
    Run::later(async move {
        let (found, value) = match read_string_key(&shared, key.clone(), q).await {
            Ok((found, Some(value))) => (found, value),
            Ok((_, None)) => return Reply::Nil,
            Err(reply) => return reply,
        };
        // Validated after the lookup and the type check, as in Redis.
        let deadline = match opts.deadline("getex", || found.now) {
            Ok(d) => d,
            Err(reply) => return reply,
        };
        let absolute = matches!(
            opts.expire,
            Some((TimeArg::UnixSeconds | TimeArg::UnixMillis, _))
        );
        let written = match deadline {
            Some(at) if absolute && at <= found.now => {
                write_after(&shared, key, q, &found, Entry::tombstone).await
            }
            Some(at) => {
                write_after(&shared, key, q, &found, |v| Entry::set_expiry(v, Some(at))).await
            }
            None if opts.persist && found.deadline().is_some() => {
                write_after(&shared, key, q, &found, |v| Entry::set_expiry(v, None)).await
            }
            None => return Reply::Bulk(value),
        };
        match written {
            Ok(_) => Reply::Bulk(value),
            Err(reply) => reply,
        }
    })
}

/// GETDEL key
pub fn getdel(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let key = call.args[1].clone();
    call.conn.last_write = Some(key.clone());
    Run::later(async move {
        let (found, value) = match read_string_key(&shared, key.clone(), q).await {
            Ok((found, Some(value))) => (found, value),
            Ok((_, None)) => return Reply::Nil,
            Err(reply) => return reply,
        };
        match write_after(&shared, key, q, &found, Entry::tombstone).await {
            Ok(_) => Reply::Bulk(value),
            Err(reply) => reply,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<Bytes> {
        w.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    #[test]
    fn string_options_are_refused_in_the_combinations_redis_refuses() {
        let set = |w: &[&str]| StringOptions::parse(&words(w), true).is_ok();
        assert!(set(&["SET", "k", "v"]));
        assert!(set(&["SET", "k", "v", "nx", "GET"]));
        assert!(set(&["SET", "k", "v", "XX", "get", "get"]));
        assert!(set(&["SET", "k", "v", "EX", "1", "EX", "2"]));
        assert!(set(&["SET", "k", "v", "KEEPTTL", "NX"]));
        assert!(!set(&["SET", "k", "v", "NX", "XX"]));
        assert!(!set(&["SET", "k", "v", "EX"]));
        assert!(!set(&["SET", "k", "v", "EX", "1", "PX", "1"]));
        assert!(!set(&["SET", "k", "v", "KEEPTTL", "EX", "1"]));
        assert!(!set(&["SET", "k", "v", "PXAT", "1", "KEEPTTL"]));
        assert!(!set(&["SET", "k", "v", "PERSIST"]));
        assert!(!set(&["SET", "k", "v", "BOGUS"]));
        let getex = |w: &[&str]| StringOptions::parse(&words(w), false).is_ok();
        assert!(getex(&["GETEX", "k"]));
        assert!(getex(&["GETEX", "k", "persist"]));
        assert!(getex(&["GETEX", "k", "PXAT", "5"]));
        assert!(!getex(&["GETEX", "k", "PERSIST", "EX", "1"]));
        assert!(!getex(&["GETEX", "k", "NX"]));
        assert!(!getex(&["GETEX", "k", "GET"]));
        assert!(!getex(&["GETEX", "k", "KEEPTTL"]));
        let o = StringOptions::parse(&words(&["SET", "k", "v", "px", "10"]), true).unwrap();
        assert_eq!(o.expire, Some((TimeArg::Millis, Bytes::from_static(b"10"))));
    }

    #[test]
    fn deadlines_are_checked_as_redis_checks_them() {
        let d = |arg: &str, how| deadline_of(arg.as_bytes(), how, "set", 1_000);
        assert_eq!(d("5", TimeArg::Seconds), Ok(6_000));
        assert_eq!(d("5", TimeArg::Millis), Ok(1_005));
        assert_eq!(d("5", TimeArg::UnixSeconds), Ok(5_000));
        assert_eq!(d("5", TimeArg::UnixMillis), Ok(5));
        let invalid = Err(Reply::err("invalid expire time in 'set' command"));
        assert_eq!(d("0", TimeArg::Seconds), invalid);
        assert_eq!(d("-1", TimeArg::UnixMillis), invalid);
        assert_eq!(d("9223372036854775", TimeArg::Seconds), invalid);
        assert_eq!(d("9223372036854775807", TimeArg::Millis), invalid);
        assert_eq!(d("x", TimeArg::Seconds), Err(not_an_integer()));
    }

    #[test]
    fn expire_conditions_follow_redis() {
        let c = |w: &[&str]| Conditions::parse(&words(w));
        assert!(c(&["nx"]).is_ok());
        assert_eq!(
            c(&["NX", "GT"]),
            Err(Reply::err(
                "NX and XX, GT or LT options at the same time are not compatible"
            ))
        );
        assert_eq!(
            c(&["GT", "lt"]),
            Err(Reply::err(
                "GT and LT options at the same time are not compatible"
            ))
        );
        assert_eq!(c(&["foo"]), Err(Reply::err("Unsupported option foo")));
        let gt = c(&["GT"]).unwrap();
        assert!(!gt.allow(None, 10), "GT never beats an infinite TTL");
        assert!(gt.allow(Some(5), 10));
        assert!(!gt.allow(Some(10), 10));
        let lt = c(&["LT"]).unwrap();
        assert!(lt.allow(None, 10), "LT always beats an infinite TTL");
        assert!(!lt.allow(Some(10), 10));
        let nx = c(&["NX"]).unwrap();
        assert!(nx.allow(None, 1) && !nx.allow(Some(1), 2));
        let xx = c(&["XX"]).unwrap();
        assert!(!xx.allow(None, 1) && xx.allow(Some(1), 2));
    }
}
