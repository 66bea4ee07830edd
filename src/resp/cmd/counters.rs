//! Counters: INCR, DECR, INCRBY, DECRBY (through the key's owner, see
//! `coordinator::counter`) and INCRBYFLOAT (a read-modify-write).
//!
//! The integer commands never lose an increment: each lands in the share
//! of the node that applied it, and every share counts. Their replies and
//! errors are Redis 7.0's (`t_string.c`, `incrDecrCommand`). A failed
//! increment is indeterminate (see the error's text): it may count.

use super::{not_an_integer, parse_int, wrong_type, Call, Run};
use crate::message::IncrResult;
use crate::resp::codec::Reply;
use crate::values::IncrError;

/// INCR key
pub fn incr(call: Call<'_>) -> Run {
    increment(call, 1)
}

/// DECR key
pub fn decr(call: Call<'_>) -> Run {
    increment(call, -1)
}

/// INCRBY key increment
pub fn incrby(call: Call<'_>) -> Run {
    match parse_int(&call.args[2]) {
        Some(by) => increment(call, by),
        None => Run::Now(not_an_integer()),
    }
}

/// DECRBY key decrement
pub fn decrby(call: Call<'_>) -> Run {
    match parse_int(&call.args[2]) {
        // Negating the smallest integer overflows.
        Some(i64::MIN) => Run::Now(Reply::err("decrement would overflow")),
        Some(by) => increment(call, -by),
        None => Run::Now(not_an_integer()),
    }
}

fn increment(call: Call<'_>, by: i64) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let key = call.args[1].clone();
    call.conn.last_write = Some(key.clone());
    Run::later(async move { incr_reply(shared.increment(key, None, by, q).await) })
}

/// The client's reply to what an increment's owner answered.
pub fn incr_reply(result: IncrResult) -> Reply {
    match result {
        IncrResult::Value(n) => Reply::Integer(n),
        IncrResult::Refused(IncrError::WrongType) => wrong_type(),
        IncrResult::Refused(IncrError::NotInteger) => not_an_integer(),
        IncrResult::Refused(IncrError::FieldNotInteger) => {
            Reply::err("hash value is not an integer")
        }
        IncrResult::Refused(IncrError::Overflow) => {
            Reply::err("increment or decrement would overflow")
        }
        IncrResult::Invalid(why) => match why.strip_prefix(crate::error::MISCONF_PREFIX) {
            Some(reason) => super::error_reply(&crate::error::Error::Misconf(reason.to_string())),
            None if why == crate::error::OOM_REFUSAL => super::oom(),
            None => Reply::err(why),
        },
        IncrResult::Failed(why) => Reply::error_code("UNAVAILABLE", why),
    }
}
