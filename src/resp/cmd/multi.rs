//! Transactions: MULTI, EXEC, DISCARD, WATCH and UNWATCH, as honest
//! batches.
//!
//! Between MULTI and EXEC commands are checked (unknown command, wrong
//! number of arguments, NOAUTH, size limits) and queued with `+QUEUED`; a
//! refused one makes EXEC answer `-EXECABORT`, as in Redis. EXEC then
//! runs the queued commands as one pipeline, in order, with the rules of
//! `resp::order` (a command that reads a key waits for the transaction's
//! earlier writes of it), and answers the array of their replies.
//!
//! What ringkv does **not** give, because no leaderless store can without
//! a consensus round per transaction: atomicity (a failure part-way leaves
//! the earlier commands applied, and a command's error does not undo the
//! others, which is also Redis's rule) and isolation (other clients may
//! see some of the transaction's writes before the rest, and may write
//! in between).
//!
//! WATCH is an optimistic check, not a lock: WATCH reads each key with a
//! quorum read and remembers the version it found; EXEC reads them again
//! and, if any version changed (a write of the key by anyone, this
//! connection included, or a delete), answers a null array and runs
//! nothing, as Redis does. A write that lands between that second read and
//! the transaction's own writes is not detected; README says so.
//!
//! Everything that touches the watched list runs as a barrier (see
//! `resp::order`), so WATCH, UNWATCH, EXEC, DISCARD and RESET change it in
//! the order the client sent them, whatever their quorum reads cost.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::join_all;

use super::{dispatch, error_reply, lookup, Call, Run};
use crate::coordinator::Quorum;
use crate::node::shared::Shared;
use crate::resp::codec::Reply;
use crate::resp::conn::{Multi, Watched};
use crate::resp::order::{Footprint, Sequencer};

/// The keys a connection watches; changed only by barrier commands.
pub type WatchList = Arc<Mutex<Vec<Watched>>>;

fn locked(list: &WatchList) -> std::sync::MutexGuard<'_, Vec<Watched>> {
    // Every change leaves the list whole: a poisoned lock is fine.
    list.lock().unwrap_or_else(|p| p.into_inner())
}

/// MULTI
pub fn multi(call: Call<'_>) -> Run {
    let conn = call.conn;
    if conn.multi.is_some() {
        return Run::Now(Reply::err("MULTI calls can not be nested"));
    }
    conn.multi = Some(Multi::default());
    conn.info.details().multi = 0;
    Run::Now(Reply::ok())
}

/// DISCARD
pub fn discard(call: Call<'_>) -> Run {
    let conn = call.conn;
    if conn.multi.take().is_none() {
        return Run::Now(Reply::err("DISCARD without MULTI"));
    }
    conn.info.details().multi = -1;
    let watched = conn.watched.clone();
    Run::later(async move {
        locked(&watched).clear();
        Reply::ok()
    })
}

/// UNWATCH
pub fn unwatch(call: Call<'_>) -> Run {
    let watched = call.conn.watched.clone();
    Run::later(async move {
        locked(&watched).clear();
        Reply::ok()
    })
}

/// WATCH key [key ...]
pub fn watch(call: Call<'_>) -> Run {
    let Call {
        shared, conn, args, ..
    } = call;
    if conn.multi.is_some() {
        return Run::Now(Reply::err("WATCH inside MULTI is not allowed"));
    }
    let shared = shared.clone();
    let q = conn.quorum;
    let watched = conn.watched.clone();
    Run::later(async move {
        let keys: Vec<Bytes> = args[1..].to_vec();
        match versions(&shared, &keys, q).await {
            Ok(found) => {
                let mut list = locked(&watched);
                for (key, version) in keys.into_iter().zip(found) {
                    if !list.iter().any(|w| w.key == key) {
                        list.push(Watched { key, version });
                    }
                }
                Reply::ok()
            }
            Err(reply) => reply,
        }
    })
}

/// The versions quorum reads find for `keys` (a delete's tombstone has one
/// too; `None` where no replica asked has the key).
async fn versions(
    shared: &Shared,
    keys: &[Bytes],
    q: Quorum,
) -> Result<Vec<Option<crate::store::Version>>, Reply> {
    let reads = keys.iter().map(|k| shared.read(k.clone(), q));
    let mut out = Vec::with_capacity(keys.len());
    for result in join_all(reads).await {
        match result {
            Ok(e) => out.push(e.map(|e| e.version())),
            Err(e) => return Err(error_reply(&e)),
        }
    }
    Ok(out)
}

/// EXEC
pub fn exec(call: Call<'_>) -> Run {
    let Call { shared, conn, .. } = call;
    let Some(multi) = conn.multi.take() else {
        return Run::Now(Reply::err("EXEC without MULTI"));
    };
    conn.info.details().multi = -1;
    let watched = conn.watched.clone();
    if multi.dirty {
        return Run::later(async move {
            locked(&watched).clear();
            Reply::error_code(
                "EXECABORT",
                "Transaction discarded because of previous errors.",
            )
        });
    }
    // Dispatched now, in order, so that commands changing the connection
    // take effect in their place; the data commands' futures do nothing
    // until the batch below polls them.
    let mut batch: Vec<(Footprint, Run)> = Vec::with_capacity(multi.queued.len());
    for args in multi.queued {
        let spec = args.first().and_then(|name| lookup(name));
        let footprint = match spec {
            Some(spec) => Footprint::of(spec, &args),
            None => Footprint::none(),
        };
        // Checked again as it runs: the user's rules may have changed
        // since it was queued (Redis words that refusal apart).
        let denied = spec.and_then(|s| conn.current_perms(&shared.acl).check(s, &args).err());
        let run = match denied {
            Some(d) => Run::Now(super::noperm(shared, conn, d, true)),
            None => dispatch(shared, conn, args),
        };
        batch.push((footprint, run));
    }
    let shared = shared.clone();
    let q = conn.quorum;
    Run::later(async move {
        let watched: Vec<Watched> = std::mem::take(&mut *locked(&watched));
        if !watched.is_empty() {
            let keys: Vec<Bytes> = watched.iter().map(|w| w.key.clone()).collect();
            match versions(&shared, &keys, q).await {
                Ok(now) if now.iter().zip(&watched).all(|(v, w)| *v == w.version) => {}
                Ok(_) => return Reply::NilArray,
                Err(reply) => return reply,
            }
        }
        let mut seq = Sequencer::with_capacity(batch.len());
        for (footprint, run) in batch {
            seq.push((), footprint, run);
        }
        let mut replies = Vec::with_capacity(seq.len());
        while let Some(((), reply)) = std::future::poll_fn(|cx| seq.poll_next(cx)).await {
            replies.push(reply);
        }
        Reply::Array(replies)
    })
}
