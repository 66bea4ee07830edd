//! The command table: one row per command ringkv has.
//!
//! A row holds what the dispatcher and the connection need on every
//! command, read from a static array with no allocation: the name, Redis's
//! arity (`n` exactly n arguments, the name included; `-n` at least n),
//! where the keys are (Redis's first, last, step), where the values are
//! (for the size limits), flags, and the handler. A unit test checks every
//! row's arity, keys and flags against Redis's own metadata (`meta`), so
//! the two cannot drift apart; ringkv's own flags (`RMW`, `RMW_WITH_OPTIONS`, `BARRIER`) say
//! how a command is ordered against the others of its connection (see
//! `resp::order`).
//!
//! The table index of a command is also its metrics label.

use bytes::Bytes;

use super::{
    acl, client, command, connection, counters, expire, hashes, keys, multi, ringkv, server, sets,
    strings, Handler,
};

/// May run before AUTH (Redis's `no_auth`).
pub const NO_AUTH: u32 = 1;
/// Runs at once inside MULTI instead of being queued (EXEC, DISCARD,
/// MULTI, WATCH, QUIT, RESET, as in Redis's `processCommand`).
pub const TRANSACTION_CONTROL: u32 = 1 << 1;
/// Changes data (Redis's `write`).
pub const WRITE: u32 = 1 << 2;
/// Only reads data (Redis's `readonly`).
pub const READONLY: u32 = 1 << 3;
/// Reads a key, then writes it from what it read: waits for earlier
/// commands of its connection on the same keys, and later ones on those
/// keys wait for it (see `resp::order`).
pub const RMW: u32 = 1 << 4;
/// Runs after every earlier command of its connection has finished, and
/// before any later one starts (FLUSHALL, EXEC, WAIT, KEYS...).
pub const BARRIER: u32 = 1 << 5;

/// RMW when given any option past its required arguments (SET NX, XX,
/// GET and KEEPTTL read before they write; for simplicity every option
/// counts).
pub const RMW_WITH_OPTIONS: u32 = 1 << 6;

/// One command ringkv has.
#[derive(Debug)]
pub struct Spec {
    /// The lower-case name, as Redis names it in errors and COMMAND.
    pub name: &'static str,
    /// Redis's arity: exactly `n` arguments, or at least `-n`.
    pub arity: i32,
    /// `NO_AUTH`, `WRITE`, `RMW` ...
    pub flags: u32,
    /// First key argument (0: none), last (negative counts from the end),
    /// and the step between keys.
    pub key_args: (usize, i32, usize),
    /// First value argument (0: none) and step, for `max_value_bytes`.
    pub value_args: (usize, usize),
    /// What runs it.
    pub run: Handler,
    /// Its index in [`TABLE`] (and its metrics label).
    pub index: usize,
}

impl Spec {
    /// Whether `n` arguments (the name included) fit the arity.
    pub fn arity_ok(&self, n: usize) -> bool {
        let n = n as i64;
        let a = i64::from(self.arity);
        if a >= 0 {
            n == a
        } else {
            n >= -a
        }
    }

    /// Whether the command has all of `flags`.
    pub fn has(&self, flags: u32) -> bool {
        self.flags & flags == flags
    }

    /// The key arguments of a call of this command.
    pub fn keys<'a>(&self, args: &'a [Bytes]) -> std::iter::StepBy<std::slice::Iter<'a, Bytes>> {
        let (first, last, step) = self.key_args;
        slice_of(args, first, last, step)
    }

    /// The value arguments of a call (checked against `max_value_bytes`).
    pub fn values<'a>(&self, args: &'a [Bytes]) -> std::iter::StepBy<std::slice::Iter<'a, Bytes>> {
        let (first, step) = self.value_args;
        slice_of(args, first, -1, step)
    }
}

/// `args[first..=last]` by `step`, `last` negative from the end; empty when
/// `first` is 0 or out of range.
fn slice_of(
    args: &[Bytes],
    first: usize,
    last: i32,
    step: usize,
) -> std::iter::StepBy<std::slice::Iter<'_, Bytes>> {
    let end = if last < 0 {
        (args.len() as i64 + i64::from(last) + 1).max(0) as usize
    } else {
        (last as usize + 1).min(args.len())
    };
    let range = if first == 0 || first >= end {
        &args[..0]
    } else {
        &args[first..end]
    };
    range.iter().step_by(step.max(1))
}

macro_rules! table {
    ($($name:literal => $arity:expr, $flags:expr, $keys:expr, $values:expr, $run:path;)*) => {
        /// How many commands there are.
        pub const COUNT: usize = <[&[u8]]>::len(&[$($name),*]);

        /// Every command, in the order of this list.
        pub static TABLE: &[Spec] = &{
            let names: &[&[u8]] = &[$($name),*];
            let mut i = 0;
            let specs = [$(Spec {
                name: match std::str::from_utf8($name) {
                    Ok(s) => s,
                    Err(_) => panic!("command names are ASCII"),
                },
                arity: $arity,
                flags: $flags,
                key_args: $keys,
                value_args: $values,
                run: $run,
                index: 0,
            }),*];
            let mut specs = specs;
            while i < names.len() {
                specs[i].index = i;
                i += 1;
            }
            specs
        };

        /// The row of the command named `name` (any case), if ringkv has it.
        pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
            // Lower-cased on the stack: no allocation per command. Names
            // longer than any command fall through to "unknown".
            let mut buf = [0u8; 16];
            let lower = buf.get_mut(..name.len())?;
            lower.copy_from_slice(name);
            lower.make_ascii_lowercase();
            let mut i = 0usize;
            $(
                if *lower == *$name {
                    return TABLE.get(i);
                }
                i += 1;
            )*
            let _ = i;
            None
        }
    };
}

const NONE: (usize, i32, usize) = (0, 0, 0);
const ONE: (usize, i32, usize) = (1, 1, 1);
const ALL: (usize, i32, usize) = (1, -1, 1);
const PAIRS: (usize, i32, usize) = (1, -1, 2);
const NO_VALUES: (usize, usize) = (0, 0);

table! {
    // The hot path first: the lookup tries names in this order.
    b"get" => 2, READONLY, ONE, NO_VALUES, strings::get;
    b"set" => -3, WRITE | RMW_WITH_OPTIONS, ONE, (2, usize::MAX), strings::set;
    b"mget" => -2, READONLY, ALL, NO_VALUES, strings::mget;
    b"mset" => -3, WRITE, PAIRS, (2, 2), strings::mset;
    b"del" => -2, WRITE, ALL, NO_VALUES, keys::del;
    b"exists" => -2, READONLY, ALL, NO_VALUES, keys::exists;
    b"ping" => -1, 0, NONE, NO_VALUES, connection::ping;
    b"setnx" => 3, WRITE | RMW, ONE, (2, 1), strings::setnx;
    b"getset" => 3, WRITE | RMW, ONE, (2, 1), strings::getset;
    b"append" => 3, WRITE | RMW, ONE, (2, 1), strings::append;
    b"strlen" => 2, READONLY, ONE, NO_VALUES, strings::strlen;
    b"getrange" => 4, READONLY, ONE, NO_VALUES, strings::getrange;
    b"substr" => 4, READONLY, ONE, NO_VALUES, strings::getrange;
    b"setrange" => 4, WRITE | RMW, ONE, (3, 1), strings::setrange;
    b"msetnx" => -3, WRITE | RMW, PAIRS, (2, 2), strings::msetnx;
    b"incr" => 2, WRITE | RMW, ONE, NO_VALUES, counters::incr;
    b"decr" => 2, WRITE | RMW, ONE, NO_VALUES, counters::decr;
    b"incrby" => 3, WRITE | RMW, ONE, NO_VALUES, counters::incrby;
    b"decrby" => 3, WRITE | RMW, ONE, NO_VALUES, counters::decrby;
    b"incrbyfloat" => 3, WRITE | RMW, ONE, NO_VALUES, strings::incrbyfloat;
    b"setex" => 4, WRITE, ONE, (3, 1), expire::setex;
    b"psetex" => 4, WRITE, ONE, (3, 1), expire::psetex;
    b"expire" => -3, WRITE | RMW, ONE, NO_VALUES, expire::expire;
    b"pexpire" => -3, WRITE | RMW, ONE, NO_VALUES, expire::pexpire;
    b"expireat" => -3, WRITE | RMW, ONE, NO_VALUES, expire::expireat;
    b"pexpireat" => -3, WRITE | RMW, ONE, NO_VALUES, expire::pexpireat;
    b"ttl" => 2, READONLY, ONE, NO_VALUES, expire::ttl;
    b"pttl" => 2, READONLY, ONE, NO_VALUES, expire::pttl;
    b"expiretime" => 2, READONLY, ONE, NO_VALUES, expire::expiretime;
    b"pexpiretime" => 2, READONLY, ONE, NO_VALUES, expire::pexpiretime;
    b"persist" => 2, WRITE | RMW, ONE, NO_VALUES, expire::persist;
    b"getex" => -2, WRITE | RMW, ONE, NO_VALUES, expire::getex;
    b"getdel" => 2, WRITE | RMW, ONE, NO_VALUES, expire::getdel;
    b"hset" => -4, WRITE, ONE, (2, 1), hashes::hset;
    b"hget" => 3, READONLY, ONE, NO_VALUES, hashes::hget;
    b"hmset" => -4, WRITE, ONE, (2, 1), hashes::hmset;
    b"hmget" => -3, READONLY, ONE, NO_VALUES, hashes::hmget;
    b"hsetnx" => 4, WRITE | RMW, ONE, (2, 1), hashes::hsetnx;
    b"hdel" => -3, WRITE, ONE, NO_VALUES, hashes::hdel;
    b"hexists" => 3, READONLY, ONE, NO_VALUES, hashes::hexists;
    b"hstrlen" => 3, READONLY, ONE, NO_VALUES, hashes::hstrlen;
    b"hlen" => 2, READONLY, ONE, NO_VALUES, hashes::hlen;
    b"hgetall" => 2, READONLY, ONE, NO_VALUES, hashes::hgetall;
    b"hkeys" => 2, READONLY, ONE, NO_VALUES, hashes::hkeys;
    b"hvals" => 2, READONLY, ONE, NO_VALUES, hashes::hvals;
    b"hscan" => -3, READONLY, ONE, NO_VALUES, hashes::hscan;
    b"hrandfield" => -2, READONLY, ONE, NO_VALUES, hashes::hrandfield;
    b"hincrby" => 4, WRITE | RMW, ONE, NO_VALUES, hashes::hincrby;
    b"hincrbyfloat" => 4, WRITE | RMW, ONE, NO_VALUES, hashes::hincrbyfloat;
    b"sadd" => -3, WRITE, ONE, (2, 1), sets::sadd;
    b"srem" => -3, WRITE, ONE, NO_VALUES, sets::srem;
    b"sismember" => 3, READONLY, ONE, NO_VALUES, sets::sismember;
    b"smismember" => -3, READONLY, ONE, NO_VALUES, sets::smismember;
    b"scard" => 2, READONLY, ONE, NO_VALUES, sets::scard;
    b"smembers" => 2, READONLY, ONE, NO_VALUES, sets::smembers;
    b"sscan" => -3, READONLY, ONE, NO_VALUES, sets::sscan;
    b"srandmember" => -2, READONLY, ONE, NO_VALUES, sets::srandmember;
    b"spop" => -2, WRITE | RMW, ONE, NO_VALUES, sets::spop;
    b"smove" => 4, WRITE | RMW, (1, 2, 1), (3, 1), sets::smove;
    b"sinter" => -2, READONLY, ALL, NO_VALUES, sets::sinter;
    b"sunion" => -2, READONLY, ALL, NO_VALUES, sets::sunion;
    b"sdiff" => -2, READONLY, ALL, NO_VALUES, sets::sdiff;
    b"sinterstore" => -3, WRITE | RMW, ALL, NO_VALUES, sets::sinterstore;
    b"sunionstore" => -3, WRITE | RMW, ALL, NO_VALUES, sets::sunionstore;
    b"sdiffstore" => -3, WRITE | RMW, ALL, NO_VALUES, sets::sdiffstore;
    b"sintercard" => -3, READONLY, NONE, NO_VALUES, sets::sintercard;
    b"rename" => 3, WRITE, (1, 2, 1), NO_VALUES, keys::refuse_move;
    b"renamenx" => 3, WRITE, (1, 2, 1), NO_VALUES, keys::refuse_move;
    b"copy" => -3, WRITE, (1, 2, 1), NO_VALUES, keys::refuse_move;
    b"unlink" => -2, WRITE, ALL, NO_VALUES, keys::del;
    b"touch" => -2, READONLY, ALL, NO_VALUES, keys::exists;
    b"type" => 2, READONLY, ONE, NO_VALUES, keys::type_of;
    b"dbsize" => 1, READONLY | BARRIER, NONE, NO_VALUES, keys::dbsize;
    b"keys" => 2, READONLY | BARRIER, NONE, NO_VALUES, keys::keys;
    b"scan" => -2, READONLY | BARRIER, NONE, NO_VALUES, keys::scan;
    b"randomkey" => 1, READONLY | BARRIER, NONE, NO_VALUES, keys::randomkey;
    b"flushall" => -1, WRITE | BARRIER, NONE, NO_VALUES, keys::flushall;
    b"flushdb" => -1, WRITE | BARRIER, NONE, NO_VALUES, keys::flushall;
    b"echo" => 2, 0, NONE, NO_VALUES, connection::echo;
    b"auth" => -2, NO_AUTH, NONE, NO_VALUES, connection::auth;
    b"hello" => -1, NO_AUTH, NONE, NO_VALUES, connection::hello;
    b"quit" => -1, NO_AUTH | TRANSACTION_CONTROL, NONE, NO_VALUES, connection::quit;
    b"reset" => 1, NO_AUTH | TRANSACTION_CONTROL | BARRIER, NONE, NO_VALUES, connection::reset;
    b"select" => 2, 0, NONE, NO_VALUES, connection::select;
    b"readonly" => 1, 0, NONE, NO_VALUES, connection::readonly;
    b"readwrite" => 1, 0, NONE, NO_VALUES, connection::readonly;
    b"client" => -2, 0, NONE, NO_VALUES, client::client;
    b"info" => -1, 0, NONE, NO_VALUES, server::info;
    b"config" => -2, 0, NONE, NO_VALUES, server::config;
    b"command" => -1, 0, NONE, NO_VALUES, command::command;
    b"acl" => -2, BARRIER, NONE, NO_VALUES, acl::acl;
    b"time" => 1, 0, NONE, NO_VALUES, server::time;
    b"lolwut" => -1, READONLY, NONE, NO_VALUES, server::lolwut;
    b"wait" => 3, BARRIER, NONE, NO_VALUES, server::wait;
    b"multi" => 1, TRANSACTION_CONTROL, NONE, NO_VALUES, multi::multi;
    b"exec" => 1, TRANSACTION_CONTROL | BARRIER, NONE, NO_VALUES, multi::exec;
    b"discard" => 1, TRANSACTION_CONTROL | BARRIER, NONE, NO_VALUES, multi::discard;
    b"watch" => -2, TRANSACTION_CONTROL | BARRIER, ALL, NO_VALUES, multi::watch;
    b"unwatch" => 1, BARRIER, NONE, NO_VALUES, multi::unwatch;
    b"ringkv" => -2, 0, NONE, NO_VALUES, ringkv::ringkv;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_found_by_its_name_in_any_case() {
        for spec in TABLE {
            assert_eq!(
                lookup(spec.name.as_bytes()).map(|s| s.index),
                Some(spec.index)
            );
            let upper = spec.name.to_ascii_uppercase();
            assert_eq!(lookup(upper.as_bytes()).map(|s| s.index), Some(spec.index));
            assert_eq!(TABLE[spec.index].name, spec.name);
        }
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(b"a-name-longer-than-any-command").is_none());
        assert!(lookup(b"").is_none());
    }

    #[test]
    fn keys_and_values_are_found_where_the_row_says() {
        let args = |s: &[&str]| {
            s.iter()
                .map(|a| Bytes::from(a.to_string()))
                .collect::<Vec<_>>()
        };
        let mset = lookup(b"mset").unwrap();
        let a = args(&["mset", "k1", "v1", "k2", "v2"]);
        assert_eq!(mset.keys(&a).collect::<Vec<_>>(), [&a[1], &a[3]]);
        assert_eq!(mset.values(&a).collect::<Vec<_>>(), [&a[2], &a[4]]);
        let set = lookup(b"set").unwrap();
        let a = args(&["set", "k", "v", "NX", "GET"]);
        assert_eq!(set.keys(&a).collect::<Vec<_>>(), [&a[1]]);
        assert_eq!(set.values(&a).collect::<Vec<_>>(), [&a[2]]);
        let del = lookup(b"del").unwrap();
        let a = args(&["del", "a", "b", "c"]);
        assert_eq!(del.keys(&a).count(), 3);
        assert_eq!(lookup(b"ping").unwrap().keys(&a).count(), 0);
    }

    #[test]
    fn arity_is_exact_or_a_minimum() {
        let get = lookup(b"get").unwrap();
        assert!(get.arity_ok(2) && !get.arity_ok(1) && !get.arity_ok(3));
        let set = lookup(b"set").unwrap();
        assert!(!set.arity_ok(2) && set.arity_ok(3) && set.arity_ok(9));
    }
}
