//! Hashes: HSET, HMSET, HSETNX, HGET, HMGET, HEXISTS, HSTRLEN, HLEN, HDEL,
//! HGETALL, HKEYS, HVALS, HSCAN, HRANDFIELD, HINCRBY, HINCRBYFLOAT.
//!
//! A hash is a map of fields, each a last-writer-wins register with its
//! own version (`values::rich`): HSET of one field ships and logs that
//! field alone, and two sides of a partition that set different fields
//! both keep theirs. HSET and HDEL are typed writes: every replica checks
//! the key's type and reports which fields it held, which is what their
//! counts answer. Reads of a few fields (HGET, HMGET, HEXISTS, HLEN...)
//! ask the replicas for those fields only (`Shared::read_part`); the ones
//! that list the whole hash read it whole.
//!
//! HINCRBY goes through the key's owner like INCRBY, so concurrent
//! increments all count. HSETNX and HINCRBYFLOAT read, then write: two of
//! them racing through different nodes may both act (README, "Hashes and
//! sets"). Fields list in byte order, where Redis lists a small hash in
//! insertion order; replies and errors are otherwise Redis 7.0's
//! (`t_hash.c`).

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::Rng;

use super::access::{distinct, read_as, read_elements, read_part_as, write_checked};
use super::{not_an_integer, parse_int, scan, syntax_error, wrong_args, Call, Run};
use crate::resp::codec::Proto;
use crate::resp::codec::Reply;
use crate::store::Entry;
use crate::values::{Check, Kind, Want};

/// HSET key field value [field value ...]: how many fields were new.
pub fn hset(call: Call<'_>) -> Run {
    set_fields(call, "hset", false)
}

/// HMSET key field value [field value ...]: OK.
pub fn hmset(call: Call<'_>) -> Run {
    set_fields(call, "hmset", true)
}

fn set_fields(call: Call<'_>, name: &str, ok: bool) -> Run {
    if call.args.len() % 2 == 1 {
        return Run::Now(wrong_args(name));
    }
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    call.conn.last_write = Some(call.args[1].clone());
    let mut args = call.args.into_iter().skip(1);
    let key = args.next().expect("the arity is checked");
    // A field named twice takes its last value and counts once.
    let mut pairs: Vec<(Bytes, Bytes)> = Vec::with_capacity(args.len() / 2);
    while let (Some(field), Some(value)) = (args.next(), args.next()) {
        match pairs.iter_mut().find(|(f, _)| *f == field) {
            Some(p) => p.1 = value,
            None => pairs.push((field, value)),
        }
    }
    let check = Check {
        kind: Kind::Hash,
        names: pairs.iter().map(|(f, _)| f.clone()).collect(),
    };
    Run::later(async move {
        match write_checked(&shared, key, q, &check, |v| Entry::hash_set(v, &pairs)).await {
            Ok(_) if ok => Reply::ok(),
            Ok(present) => Reply::Integer(present.iter().filter(|p| !**p).count() as i64),
            Err(reply) => reply,
        }
    })
}

/// HSETNX key field value: 1 if the field was set, 0 if it was there.
pub fn hsetnx(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    call.conn.last_write = Some(call.args[1].clone());
    let (key, field, value) = (
        call.args[1].clone(),
        call.args[2].clone(),
        call.args[3].clone(),
    );
    Run::later(async move {
        let want = Want::Fields(vec![field.clone()]);
        match read_part_as(&shared, key.clone(), Kind::Hash, want, q).await {
            Err(reply) => return reply,
            Ok(Some(part)) if part.field(&field).is_some() => return Reply::Integer(0),
            Ok(_) => {}
        }
        let check = Check {
            kind: Kind::Hash,
            names: [field.clone()].into(),
        };
        let pairs = [(field, value)];
        match write_checked(&shared, key, q, &check, |v| Entry::hash_set(v, &pairs)).await {
            Ok(_) => Reply::Integer(1),
            Err(reply) => reply,
        }
    })
}

/// HDEL key field [field ...]: how many fields were removed.
pub fn hdel(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    call.conn.last_write = Some(call.args[1].clone());
    let key = call.args[1].clone();
    let check = Check {
        kind: Kind::Hash,
        names: distinct(call.args[2..].iter().cloned()).into(),
    };
    Run::later(async move {
        let names = &check.names;
        match write_checked(&shared, key, q, &check, |v| Entry::hash_delete(v, names)).await {
            Ok(present) => Reply::Integer(present.iter().filter(|p| **p).count() as i64),
            Err(reply) => reply,
        }
    })
}

/// A read of some fields of `args[1]`, answered by `f` from the values of
/// `fields` (`None`: the key does not exist) and the hash's length.
fn read_fields(
    call: Call<'_>,
    fields: Vec<Bytes>,
    f: impl FnOnce(Option<(Vec<Option<Bytes>>, u64)>) -> Reply + Send + 'static,
) -> Run {
    read_elements(call, Kind::Hash, fields.clone(), move |part| {
        f(part.map(|p| (fields.iter().map(|n| p.field(n)).collect(), p.fields)))
    })
}

/// HGET key field
pub fn hget(call: Call<'_>) -> Run {
    let field = call.args[2].clone();
    read_fields(call, vec![field], |found| {
        Reply::bulk_or_nil(found.and_then(|(mut v, _)| v.swap_remove(0)))
    })
}

/// HMGET key field [field ...]
pub fn hmget(call: Call<'_>) -> Run {
    let fields = call.args[2..].to_vec();
    let n = fields.len();
    read_fields(call, fields, move |found| {
        let values = found.map_or_else(|| vec![None; n], |(v, _)| v);
        Reply::Array(values.into_iter().map(Reply::bulk_or_nil).collect())
    })
}

/// HEXISTS key field
pub fn hexists(call: Call<'_>) -> Run {
    let field = call.args[2].clone();
    read_fields(call, vec![field], |found| {
        Reply::Integer(i64::from(found.is_some_and(|(v, _)| v[0].is_some())))
    })
}

/// HSTRLEN key field
pub fn hstrlen(call: Call<'_>) -> Run {
    let field = call.args[2].clone();
    read_fields(call, vec![field], |found| {
        let len = found
            .and_then(|(mut v, _)| v.swap_remove(0))
            .map_or(0, |v| v.len());
        Reply::Integer(len as i64)
    })
}

/// HLEN key
pub fn hlen(call: Call<'_>) -> Run {
    read_fields(call, Vec::new(), |found| {
        Reply::Integer(found.map_or(0, |(_, n)| n as i64))
    })
}

/// A whole read of the hash at `args[1]`, answered by `f` from its fields
/// and values in byte order (empty when the key does not exist).
fn read_whole(
    call: Call<'_>,
    f: impl FnOnce(Vec<(Bytes, Bytes)>) -> Reply + Send + 'static,
) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let key = call.args[1].clone();
    Run::later(async move {
        match read_as(&shared, key, Kind::Hash, q).await {
            Ok((entry, _)) => f(entry.map(|e| e.hash_fields()).unwrap_or_default()),
            Err(reply) => reply,
        }
    })
}

/// HGETALL key: a map in RESP3, fields and values in turn in RESP2.
pub fn hgetall(call: Call<'_>) -> Run {
    read_whole(call, |fields| {
        Reply::Map(
            fields
                .into_iter()
                .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                .collect(),
        )
    })
}

/// HKEYS key
pub fn hkeys(call: Call<'_>) -> Run {
    read_whole(call, |fields| {
        Reply::bulks(fields.into_iter().map(|(f, _)| f))
    })
}

/// HVALS key
pub fn hvals(call: Call<'_>) -> Run {
    read_whole(call, |fields| {
        Reply::bulks(fields.into_iter().map(|(_, v)| v))
    })
}

/// HSCAN key cursor [MATCH pattern] [COUNT count] (see `scan`).
pub fn hscan(call: Call<'_>) -> Run {
    let cursor = match scan::parse_cursor(&call.args[2]) {
        Ok(c) => c,
        Err(reply) => return Run::Now(reply),
    };
    // Redis parses the options only once it found the hash.
    let opts = scan::ScanOpts::parse(&call.args, 3, false);
    read_whole(call, move |fields| {
        match scan::collection_page(fields, |(f, _)| &f[..], cursor, opts) {
            Ok((next, page)) => {
                scan::reply(next, page.into_iter().flat_map(|(f, v)| [f, v]).collect())
            }
            Err(reply) => reply,
        }
    })
}

/// HRANDFIELD key [count [WITHVALUES]]
pub fn hrandfield(call: Call<'_>) -> Run {
    let args = &call.args;
    let count = match args.get(2) {
        None => None,
        Some(c) => match random_count(c) {
            Ok(n) => Some(n),
            Err(reply) => return Run::Now(reply),
        },
    };
    let with_values = match args.get(3) {
        None => false,
        Some(w) if args.len() == 4 && w.eq_ignore_ascii_case(b"withvalues") => true,
        Some(_) => return Run::Now(syntax_error()),
    };
    if args.len() > 4 {
        return Run::Now(syntax_error());
    }
    if with_values && count.is_some_and(|n| !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n)) {
        return Run::Now(Reply::err("value is out of range"));
    }
    let resp3 = call.conn.proto == Proto::Resp3;
    read_whole(call, move |fields| {
        let Some(count) = count else {
            let one = fields
                .choose(&mut rand::thread_rng())
                .map(|(f, _)| f.clone());
            return Reply::bulk_or_nil(one);
        };
        let picked = pick(fields, count);
        let items = picked.into_iter().map(|(f, v)| match (with_values, resp3) {
            (false, _) => vec![Reply::Bulk(f)],
            (true, false) => vec![Reply::Bulk(f), Reply::Bulk(v)],
            (true, true) => vec![Reply::Array(vec![Reply::Bulk(f), Reply::Bulk(v)])],
        });
        Reply::Array(items.flatten().collect())
    })
}

/// The count of HRANDFIELD and SRANDMEMBER: an integer in
/// -LONG_MAX..=LONG_MAX, with Redis's errors.
pub fn random_count(arg: &[u8]) -> Result<i64, Reply> {
    match parse_int(arg) {
        None => Err(not_an_integer()),
        Some(i64::MIN) => Err(Reply::err(format!(
            "value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        ))),
        Some(n) => Ok(n),
    }
}

/// `count` random elements of `items`, as Redis picks them: distinct ones
/// (all of them at most) for a positive count, repeats allowed for a
/// negative one.
pub fn pick<T: Clone>(mut items: Vec<T>, count: i64) -> Vec<T> {
    let mut rng = rand::thread_rng();
    if items.is_empty() || count == 0 {
        return Vec::new();
    }
    if count < 0 {
        let n = count.unsigned_abs();
        return (0..n)
            .map(|_| items[rng.gen_range(0..items.len())].clone())
            .collect();
    }
    items.shuffle(&mut rng);
    items.truncate(usize::try_from(count).unwrap_or(usize::MAX));
    items
}

/// HINCRBY key field increment: through the key's owner, as INCRBY.
pub fn hincrby(call: Call<'_>) -> Run {
    let Some(by) = parse_int(&call.args[3]) else {
        return Run::Now(not_an_integer());
    };
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let (key, field) = (call.args[1].clone(), call.args[2].clone());
    call.conn.last_write = Some(key.clone());
    Run::later(async move {
        super::counters::incr_reply(shared.increment(key, Some(field), by, q).await)
    })
}

/// HINCRBYFLOAT key field increment: a read-modify-write with Redis's
/// long double arithmetic (`values::float`).
pub fn hincrbyfloat(call: Call<'_>) -> Run {
    use crate::values::float::hincr_by_float;
    let incr = call.args[3].clone();
    // The increment is checked before the key, as in Redis.
    if let Err(e) = hincr_by_float(None, &incr) {
        return Run::Now(Reply::err(e.message()));
    }
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let (key, field) = (call.args[1].clone(), call.args[2].clone());
    call.conn.last_write = Some(key.clone());
    Run::later(async move {
        let (entry, found) = match read_as(&shared, key.clone(), Kind::Hash, q).await {
            Ok(read) => read,
            Err(reply) => return reply,
        };
        let current = entry.and_then(|e| e.part(&Want::Fields(vec![field.clone()])).field(&field));
        let text = match hincr_by_float(current.as_deref(), &incr) {
            Ok(text) => Bytes::from(text),
            Err(e) => return Reply::err(e.message()),
        };
        let check = Check {
            kind: Kind::Hash,
            names: [field.clone()].into(),
        };
        let pairs = [(field, text.clone())];
        let write = shared
            .write_checked_after(key, q, &check, found.seen(), |v| Entry::hash_set(v, &pairs));
        match write.await {
            Ok(_) => Reply::Bulk(text),
            Err(e) => super::error_reply(&e),
        }
    })
}
