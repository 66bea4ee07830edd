//! Sets: SADD, SREM, SISMEMBER, SMISMEMBER, SCARD, SMEMBERS, SSCAN,
//! SRANDMEMBER, SPOP, SMOVE, SINTER, SUNION, SDIFF, their STORE forms,
//! and SINTERCARD.
//!
//! A set is a map of members, each a last-writer-wins present/absent
//! register with its own version (`values::rich`): SADD of one member
//! ships and logs that member alone, and members added on two sides of a
//! partition are all kept; a member removed on one side and added on the
//! other ends as the later of the two says. SADD and SREM are typed writes
//! whose counts come from what the replicas held (as HSET's do).
//!
//! SPOP and SMOVE read, then remove (and add): two of them racing through
//! different nodes may pop or move the same member (README, "Hashes and
//! sets"). The STORE forms replace the destination whole. Members list in
//! byte order; replies and errors are otherwise Redis 7.0's (`t_set.c`).

use bytes::Bytes;
use futures::future::join_all;

use super::access::{distinct, read_as, read_elements, read_part_as, write_checked};
use super::hashes::{pick, random_count};
use super::{error_reply, parse_int, scan, syntax_error, Call, Run};
use crate::resp::codec::Reply;
use crate::store::Entry;
use crate::values::{Check, Kind, Want};

fn check(names: Vec<Bytes>) -> Check {
    Check {
        kind: Kind::Set,
        names: names.into(),
    }
}

/// SADD key member [member ...] (`present`) and SREM: how many members
/// were added (were not there) or removed (were there).
fn change(call: Call<'_>, present: bool) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    call.conn.last_write = Some(call.args[1].clone());
    let key = call.args[1].clone();
    let members = distinct(call.args[2..].iter().cloned());
    let check = check(members.clone());
    Run::later(async move {
        let build = |v| Entry::set_members(v, &members, present);
        match write_checked(&shared, key, q, &check, build).await {
            Ok(held) => Reply::Integer(held.iter().filter(|h| **h != present).count() as i64),
            Err(reply) => reply,
        }
    })
}

/// SADD key member [member ...]
pub fn sadd(call: Call<'_>) -> Run {
    change(call, true)
}

/// SREM key member [member ...]
pub fn srem(call: Call<'_>) -> Run {
    change(call, false)
}

/// A read of some members of `args[1]`, answered by `f` from whether each
/// is present and the set's size (`None`: the key does not exist).
fn read_members(
    call: Call<'_>,
    members: Vec<Bytes>,
    f: impl FnOnce(Option<(crate::values::Present, u64)>) -> Reply + Send + 'static,
) -> Run {
    read_elements(call, Kind::Set, members.clone(), move |part| {
        f(part.map(|p| (members.iter().map(|m| p.has_member(m)).collect(), p.members)))
    })
}

/// SISMEMBER key member
pub fn sismember(call: Call<'_>) -> Run {
    let member = call.args[2].clone();
    read_members(call, vec![member], |found| {
        Reply::Integer(i64::from(found.is_some_and(|(h, _)| h[0])))
    })
}

/// SMISMEMBER key member [member ...]
pub fn smismember(call: Call<'_>) -> Run {
    let members = call.args[2..].to_vec();
    let n = members.len();
    read_members(call, members, move |found| {
        let held = found.map_or_else(|| smallvec::smallvec![false; n], |(h, _)| h);
        Reply::Array(
            held.into_iter()
                .map(|h| Reply::Integer(i64::from(h)))
                .collect(),
        )
    })
}

/// SCARD key
pub fn scard(call: Call<'_>) -> Run {
    read_members(call, Vec::new(), |found| {
        Reply::Integer(found.map_or(0, |(_, n)| n as i64))
    })
}

/// The members of the set at `key` in byte order (empty when it does not
/// exist), with the version read, or WRONGTYPE.
async fn members_of(
    shared: &crate::node::shared::Shared,
    key: Bytes,
    q: crate::coordinator::Quorum,
) -> Result<Vec<Bytes>, Reply> {
    let (entry, _) = read_as(shared, key, Kind::Set, q).await?;
    Ok(entry.map(|e| e.set_members_present()).unwrap_or_default())
}

/// A whole read of the set at `args[1]`, answered by `f` from its members.
fn read_whole(call: Call<'_>, f: impl FnOnce(Vec<Bytes>) -> Reply + Send + 'static) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let key = call.args[1].clone();
    Run::later(async move {
        match members_of(&shared, key, q).await {
            Ok(members) => f(members),
            Err(reply) => reply,
        }
    })
}

fn set_reply(members: Vec<Bytes>) -> Reply {
    Reply::Set(members.into_iter().map(Reply::Bulk).collect())
}

/// SMEMBERS key: a set in RESP3.
pub fn smembers(call: Call<'_>) -> Run {
    read_whole(call, set_reply)
}

/// SSCAN key cursor [MATCH pattern] [COUNT count] (see `scan`).
pub fn sscan(call: Call<'_>) -> Run {
    let cursor = match scan::parse_cursor(&call.args[2]) {
        Ok(c) => c,
        Err(reply) => return Run::Now(reply),
    };
    let opts = scan::ScanOpts::parse(&call.args, 3, false);
    read_whole(call, move |members| {
        match scan::collection_page(members, |m| &m[..], cursor, opts) {
            Ok((next, page)) => scan::reply(next, page),
            Err(reply) => reply,
        }
    })
}

/// SRANDMEMBER key [count]
pub fn srandmember(call: Call<'_>) -> Run {
    if call.args.len() > 3 {
        return Run::Now(syntax_error());
    }
    let count = match call.args.get(2).map(|c| random_count(c)).transpose() {
        Ok(c) => c,
        Err(reply) => return Run::Now(reply),
    };
    read_whole(call, move |members| match count {
        None => Reply::bulk_or_nil(pick(members, 1).pop()),
        Some(n) => Reply::bulks(pick(members, n)),
    })
}

/// SPOP key [count]: picks, then removes what it picked (see the module
/// doc).
pub fn spop(call: Call<'_>) -> Run {
    if call.args.len() > 3 {
        return Run::Now(syntax_error());
    }
    let count = match call.args.get(2) {
        None => None,
        Some(c) => match parse_int(c).filter(|n| *n >= 0) {
            Some(n) => Some(n),
            None => return Run::Now(Reply::err("value is out of range, must be positive")),
        },
    };
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    call.conn.last_write = Some(call.args[1].clone());
    let key = call.args[1].clone();
    Run::later(async move {
        let members = match members_of(&shared, key.clone(), q).await {
            Ok(m) => m,
            Err(reply) => return reply,
        };
        let picked = pick(members, count.unwrap_or(1));
        if !picked.is_empty() {
            let check = check(picked.clone());
            let build = |v| Entry::set_members(v, &picked, false);
            if let Err(reply) = write_checked(&shared, key, q, &check, build).await {
                return reply;
            }
        }
        match count {
            None => Reply::bulk_or_nil(picked.into_iter().next()),
            Some(_) => set_reply(picked),
        }
    })
}

/// SMOVE source destination member: removes the member from the source,
/// then adds it to the destination (see the module doc).
pub fn smove(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    call.conn.last_write = Some(call.args[2].clone());
    let (src, dst, member) = (
        call.args[1].clone(),
        call.args[2].clone(),
        call.args[3].clone(),
    );
    Run::later(async move {
        let want = Want::Members(vec![member.clone()]);
        let held = match read_part_as(&shared, src.clone(), Kind::Set, want, q).await {
            // A missing source answers 0 before the destination is looked at.
            Ok(None) => return Reply::Integer(0),
            Ok(Some(part)) => part.has_member(&member),
            Err(reply) => return reply,
        };
        if let Err(reply) = read_part_as(&shared, dst.clone(), Kind::Set, Want::Head, q).await {
            return reply;
        }
        if src == dst || !held {
            return Reply::Integer(i64::from(held));
        }
        let one = [member.clone()];
        let checked = check(one.to_vec());
        let removed = write_checked(&shared, src, q, &checked, |v| {
            Entry::set_members(v, &one, false)
        });
        match removed.await {
            Ok(was) if was.first() == Some(&true) => {}
            Ok(_) => return Reply::Integer(0),
            Err(reply) => return reply,
        }
        let added = write_checked(&shared, dst, q, &checked, |v| {
            Entry::set_members(v, &one, true)
        });
        match added.await {
            Ok(_) => Reply::Integer(1),
            Err(reply) => reply,
        }
    })
}

/// How several sets combine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// The sets at `keys` (`None` for a missing key), read together, or
/// WRONGTYPE if any holds another type.
async fn read_sets(
    shared: &crate::node::shared::Shared,
    keys: &[Bytes],
    q: crate::coordinator::Quorum,
) -> Result<Vec<Option<Vec<Bytes>>>, Reply> {
    let reads = keys
        .iter()
        .map(|k| read_as(shared, k.clone(), Kind::Set, q));
    let mut sets = Vec::with_capacity(keys.len());
    for read in join_all(reads).await {
        let (entry, _) = read?;
        sets.push(entry.map(|e| e.set_members_present()));
    }
    Ok(sets)
}

/// The members of `op` over `sets`, in byte order.
fn combine(op: Op, sets: Vec<Option<Vec<Bytes>>>) -> Vec<Bytes> {
    use std::collections::BTreeSet;
    let mut sets = sets.into_iter();
    let first: BTreeSet<Bytes> = sets
        .next()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut out = first;
    for set in sets {
        match (op, set) {
            (Op::Inter, None) => return Vec::new(),
            (Op::Inter, Some(s)) => {
                let s: BTreeSet<Bytes> = s.into_iter().collect();
                out.retain(|m| s.contains(m));
            }
            (Op::Union, Some(s)) => out.extend(s),
            (Op::Diff, Some(s)) => {
                for m in s {
                    out.remove(&m);
                }
            }
            (_, None) => {}
        }
    }
    out.into_iter().collect()
}

fn combined(call: Call<'_>, op: Op) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let keys = call.args[1..].to_vec();
    Run::later(async move {
        match read_sets(&shared, &keys, q).await {
            Ok(sets) if op == Op::Inter && sets.iter().any(Option::is_none) => {
                set_reply(Vec::new())
            }
            Ok(sets) => set_reply(combine(op, sets)),
            Err(reply) => reply,
        }
    })
}

fn combined_store(call: Call<'_>, op: Op) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    call.conn.last_write = Some(call.args[1].clone());
    let dst = call.args[1].clone();
    let keys = call.args[2..].to_vec();
    Run::later(async move {
        let members = match read_sets(&shared, &keys, q).await {
            Ok(sets) if op == Op::Inter && sets.iter().any(Option::is_none) => Vec::new(),
            Ok(sets) => combine(op, sets),
            Err(reply) => return reply,
        };
        let n = members.len() as i64;
        let write = shared.write_with(dst, q, None, |v| Entry::replace_set(v, &members));
        match write.await {
            Ok(_) => Reply::Integer(n),
            Err(e) => error_reply(&e),
        }
    })
}

/// SINTER key [key ...]
pub fn sinter(call: Call<'_>) -> Run {
    combined(call, Op::Inter)
}

/// SUNION key [key ...]
pub fn sunion(call: Call<'_>) -> Run {
    combined(call, Op::Union)
}

/// SDIFF key [key ...]
pub fn sdiff(call: Call<'_>) -> Run {
    combined(call, Op::Diff)
}

/// SINTERSTORE destination key [key ...]
pub fn sinterstore(call: Call<'_>) -> Run {
    combined_store(call, Op::Inter)
}

/// SUNIONSTORE destination key [key ...]
pub fn sunionstore(call: Call<'_>) -> Run {
    combined_store(call, Op::Union)
}

/// SDIFFSTORE destination key [key ...]
pub fn sdiffstore(call: Call<'_>) -> Run {
    combined_store(call, Op::Diff)
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]
pub fn sintercard(call: Call<'_>) -> Run {
    let args = &call.args;
    let numkeys = match parse_int(&args[1]) {
        Some(n) if n >= 1 => n as usize,
        _ => return Run::Now(Reply::err("numkeys should be greater than 0")),
    };
    if numkeys > args.len() - 2 {
        return Run::Now(Reply::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    let mut limit = 0usize;
    let mut i = 2 + numkeys;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"limit") && i + 1 < args.len() {
            match parse_int(&args[i + 1]) {
                Some(l) if l >= 0 => limit = usize::try_from(l).unwrap_or(usize::MAX),
                _ => return Run::Now(Reply::err("LIMIT can't be negative")),
            }
            i += 2;
        } else {
            return Run::Now(syntax_error());
        }
    }
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let keys = args[2..2 + numkeys].to_vec();
    Run::later(async move {
        match read_sets(&shared, &keys, q).await {
            Ok(sets) if sets.iter().any(Option::is_none) => Reply::Integer(0),
            Ok(sets) => {
                let n = combine(Op::Inter, sets).len();
                Reply::Integer(if limit > 0 { n.min(limit) } else { n } as i64)
            }
            Err(reply) => reply,
        }
    })
}
