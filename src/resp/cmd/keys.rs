//! Keyspace commands: DEL and UNLINK, EXISTS and TOUCH, TYPE, DBSIZE,
//! KEYS, SCAN, RANDOMKEY, FLUSHALL and FLUSHDB; RENAME, RENAMENX and
//! COPY are refused, with the reason.
//!
//! DEL writes a tombstone per key (a quorum write), so the delete wins over
//! every older write of the key wherever it is merged; UNLINK is the same
//! (there is no blocking free to avoid). EXISTS and TOUCH are quorum reads
//! (TOUCH changes nothing: ringkv keeps no access times). KEYS, SCAN,
//! DBSIZE and RANDOMKEY gather the keys of every node, which is fine for
//! tools and tests and not meant for millions of keys. FLUSHALL and FLUSHDB
//! write one cluster-wide marker instead of a tombstone per key (see
//! `crate::metadata` and README's "FLUSHALL").

use bytes::Bytes;
use futures::future::join_all;

use super::{error_reply, syntax_error, Call, Run};
use crate::resp::codec::Reply;

/// RENAME, RENAMENX and COPY: refused. The two keys live on different
/// replicas; with no leader there is no way to move a key's whole state
/// (a hash's fields, a counter's shares) to another key atomically, and a
/// read followed by a write and a delete would lose what other clients
/// write in between, silently.
pub fn refuse_move(call: Call<'_>) -> Run {
    let name = call.spec.name.to_ascii_uppercase();
    Run::Now(Reply::err(format!(
        "{name} is not supported by ringkv: the two keys live on different replicas \
         and a leaderless store cannot move or copy a key atomically; \
         read it and write the new key instead"
    )))
}

/// DEL key [key ...] / UNLINK: how many of the keys existed.
pub fn del(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let mut keys: Vec<Bytes> = call.args[1..].to_vec();
    call.conn.last_write = keys.last().cloned();
    // A key named twice is deleted (and counted) once, as in Redis.
    keys.sort_unstable();
    keys.dedup();
    Run::later(async move {
        let writes = keys.into_iter().map(|k| shared.write(k, None, q));
        let mut removed = 0;
        for result in join_all(writes).await {
            match result {
                Ok(o) => removed += i64::from(o.was_live),
                Err(e) => return error_reply(&e),
            }
        }
        Reply::Integer(removed)
    })
}

/// EXISTS key [key ...] / TOUCH: how many of the keys exist (a key named
/// twice counts twice, as in Redis).
pub fn exists(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let args = call.args;
    Run::later(async move {
        let reads = args[1..].iter().map(|k| shared.read(k.clone(), q));
        let mut found = 0;
        for result in join_all(reads).await {
            let now = crate::clock::wall_millis();
            match result {
                Ok(e) => found += i64::from(e.is_some_and(|e| e.exists(now))),
                Err(e) => return error_reply(&e),
            }
        }
        Reply::Integer(found)
    })
}

/// TYPE key: `string`, `hash` or `set`, or `none` when it does not exist.
pub fn type_of(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let key = call.args[1].clone();
    Run::later(async move {
        match type_name(&shared, key, q).await {
            Ok(name) => Reply::simple(name),
            Err(e) => error_reply(&e),
        }
    })
}

/// DBSIZE: live keys in the whole cluster.
pub fn dbsize(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    Run::later(async move {
        match shared.keys(Bytes::from_static(b"*")).await {
            Ok(keys) => Reply::Integer(keys.len() as i64),
            Err(e) => error_reply(&e),
        }
    })
}

/// KEYS pattern
pub fn keys(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    let pattern = call.args[1].clone();
    Run::later(async move {
        match shared.keys(pattern).await {
            Ok(keys) => Reply::bulks(keys),
            Err(e) => error_reply(&e),
        }
    })
}

/// RANDOMKEY: one live key of the cluster, or nil when there is none.
pub fn randomkey(call: Call<'_>) -> Run {
    let shared = call.shared.clone();
    Run::later(async move {
        match shared.keys(Bytes::from_static(b"*")).await {
            Ok(keys) if keys.is_empty() => Reply::Nil,
            Ok(keys) => {
                let i = rand::random::<usize>() % keys.len();
                Reply::Bulk(keys[i].clone())
            }
            Err(e) => error_reply(&e),
        }
    })
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]: the cursor is a
/// place in a fixed hash order of the cluster's keys (see `scan`), so a
/// full iteration returns every key present throughout it (Redis's
/// guarantee), though each call gathers the whole list.
pub fn scan(call: Call<'_>) -> Run {
    let cursor = match super::scan::parse_cursor(&call.args[1]) {
        Ok(c) => c,
        Err(reply) => return Run::Now(reply),
    };
    let opts = match super::scan::ScanOpts::parse(&call.args, 2, true) {
        Ok(o) => o,
        Err(reply) => return Run::Now(reply),
    };
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    Run::later(async move {
        let pattern = opts.pattern.clone().unwrap_or(Bytes::from_static(b"*"));
        let keys = match shared.keys(pattern).await {
            Ok(keys) => keys,
            Err(e) => return error_reply(&e),
        };
        let (next, mut page) = super::scan::page(keys, |k| &k[..], cursor, opts.count);
        // TYPE filters the page, as in Redis (a page may come out empty).
        if let Some(want) = &opts.type_name {
            let types = join_all(page.iter().map(|k| type_name(&shared, k.clone(), q))).await;
            let mut kept = Vec::with_capacity(page.len());
            for (key, kind) in page.into_iter().zip(types) {
                match kind {
                    Ok(name) if name == want => kept.push(key),
                    Ok(_) => {}
                    Err(e) => return error_reply(&e),
                }
            }
            page = kept;
        }
        super::scan::reply(next, page)
    })
}

/// The name TYPE answers for `key`, read from its head only.
async fn type_name(
    shared: &crate::node::shared::Shared,
    key: Bytes,
    q: crate::coordinator::Quorum,
) -> crate::error::Result<&'static str> {
    let part = shared.read_part(key, crate::values::Want::Head, q).await?;
    let now = crate::clock::wall_millis();
    Ok(part.and_then(|p| p.kind(now)).map_or("none", |k| k.name()))
}

/// FLUSHALL [ASYNC|SYNC] / FLUSHDB [ASYNC|SYNC]
pub fn flushall(call: Call<'_>) -> Run {
    match call.args.get(1).map(|a| super::upper(a)).as_deref() {
        None | Some("ASYNC") | Some("SYNC") if call.args.len() <= 2 => {}
        _ => return Run::Now(syntax_error()),
    }
    let shared = call.shared.clone();
    Run::later(async move {
        match shared.flush_all().await {
            Ok(()) => Reply::ok(),
            Err(e) => error_reply(&e),
        }
    })
}
