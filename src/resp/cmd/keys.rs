//! Keyspace commands: DEL and UNLINK, EXISTS and TOUCH, TYPE, DBSIZE,
//! KEYS, SCAN, RANDOMKEY, FLUSHALL and FLUSHDB.
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

use super::{error_reply, parse_int, syntax_error, Call, Run};
use crate::resp::codec::Reply;

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
        let now = crate::clock::wall_millis();
        match shared.read(key, q).await {
            Ok(e) => Reply::simple(e.and_then(|e| e.kind(now)).map_or("none", |k| k.name())),
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

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]: the cursor is an
/// index into the sorted list of the cluster's keys, so a full iteration
/// returns every key present throughout it (Redis's guarantee), though
/// each call gathers the whole list.
pub fn scan(call: Call<'_>) -> Run {
    let args = call.args;
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return Run::Now(Reply::err("invalid cursor"));
    };
    let mut pattern = Bytes::from_static(b"*");
    let mut count = 10usize;
    let mut type_name: Option<String> = None;
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Run::Now(syntax_error());
        };
        match super::upper(&args[i]).as_str() {
            "MATCH" => pattern = value.clone(),
            "COUNT" => match parse_int(value) {
                None => return Run::Now(super::not_an_integer()),
                Some(c) if c < 1 => return Run::Now(syntax_error()),
                Some(c) => count = usize::try_from(c).unwrap_or(usize::MAX),
            },
            "TYPE" => type_name = Some(String::from_utf8_lossy(value).to_ascii_lowercase()),
            _ => return Run::Now(syntax_error()),
        }
        i += 2;
    }
    let shared = call.shared.clone();
    Run::later(async move {
        let keys = match shared.keys(pattern).await {
            Ok(keys) => keys,
            Err(e) => return error_reply(&e),
        };
        // Every key ringkv holds is a string.
        let keys = match type_name.as_deref() {
            None | Some("string") => keys,
            Some(_) => Vec::new(),
        };
        let cursor = usize::try_from(cursor).unwrap_or(usize::MAX);
        let end = cursor.saturating_add(count).min(keys.len());
        let next = if end >= keys.len() { 0 } else { end };
        let page = keys.get(cursor..end).unwrap_or_default();
        Reply::Array(vec![
            Reply::bulk(next.to_string()),
            Reply::bulks(page.iter().cloned()),
        ])
    })
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
