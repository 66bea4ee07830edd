//! ringkv's own client command, `RINGKV`.
//!
//! - `RINGKV QUORUM` shows this connection's read and write quorums and
//!   whether they are `sloppy` or `strict`; `RINGKV QUORUM R W [strict |
//!   sloppy]` sets them for this connection only (each between 1 and the
//!   replication factor; without the third word, the node's
//!   `strict_quorums` setting decides). See `coordinator/strict.rs`.
//! - `RINGKV PREFLIST KEY` lists the nodes that hold KEY, owner first, as
//!   this node's current ring places them.
//! - `RINGKV LOCAL KEY` shows what *this node* holds for KEY, without
//!   asking anyone: `[string-or-nil, timestamp, writer-id,
//!   "live"|"tombstone", digest]` (the string is nil for a hash or a set;
//!   the timestamp is the newest piece's; the digest, in hex, is what
//!   anti-entropy compares of the body, equal on two replicas that hold
//!   the same state), or nil when it holds nothing or the key does not
//!   exist now. Tests use it to check placement and convergence.
//! - `RINGKV NODES` lists the nodes this node sees up.

use bytes::Bytes;

use super::{Call, Run};
use crate::coordinator::Quorum;
use crate::resp::codec::Reply;

/// Runs `RINGKV <sub> ...`.
pub fn ringkv(call: Call<'_>) -> Run {
    let Call {
        shared, conn, args, ..
    } = call;
    Run::Now(answer(shared, conn, &args))
}

fn answer(
    shared: &crate::node::shared::Shared,
    conn: &mut crate::resp::conn::ConnState,
    args: &[Bytes],
) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
    match (sub.as_deref(), args.len()) {
        (Some("QUORUM"), 2) => Reply::Array(vec![
            Reply::Integer(conn.quorum.r as i64),
            Reply::Integer(conn.quorum.w as i64),
            Reply::bulk(if conn.quorum.strict {
                "strict"
            } else {
                "sloppy"
            }),
        ]),
        (Some("QUORUM"), 4 | 5) => {
            let parse = |b: &Bytes| {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
            };
            let strict = match args.get(4).map(|s| s.to_ascii_lowercase()) {
                None => Some(shared.cfg.strict_quorums),
                Some(word) if word == b"strict" => Some(true),
                Some(word) if word == b"sloppy" => Some(false),
                Some(_) => None,
            };
            let n = shared.cfg.replication;
            match (parse(&args[2]), parse(&args[3]), strict) {
                (Some(r), Some(w), Some(strict))
                    if (1..=n).contains(&r) && (1..=n).contains(&w) =>
                {
                    conn.quorum = Quorum { r, w, strict };
                    Reply::ok()
                }
                _ => Reply::err(format!(
                    "RINGKV QUORUM R W [strict|sloppy] needs two integers between 1 and the replication factor {n}"
                )),
            }
        }
        (Some("PREFLIST"), 3) => {
            let view = shared.view.load();
            let list = view
                .ring
                .preference_list_for_key(&args[2], shared.cfg.replication);
            Reply::Array(
                list.iter()
                    .map(|n| Reply::bulk(Bytes::copy_from_slice(n.as_bytes())))
                    .collect(),
            )
        }
        (Some("LOCAL"), 3) => {
            let now = crate::clock::wall_millis();
            match shared.store.get(&args[2]) {
                // Expired: absent, as everywhere else.
                Some(e) if e.is_tombstone() || e.exists(now) => Reply::Array(vec![
                    Reply::bulk_or_nil(e.string_value(now).ok().flatten()),
                    Reply::Integer(e.version().ts.0 as i64),
                    Reply::bulk(e.version().node.to_string()),
                    Reply::simple(if e.is_tombstone() {
                        "tombstone"
                    } else {
                        "live"
                    }),
                    Reply::bulk(format!("{:016x}", e.summary().body)),
                ]),
                _ => Reply::NilArray,
            }
        }
        (Some("NODES"), 2) => {
            let view = shared.view.load();
            Reply::Array(
                view.ring
                    .nodes()
                    .iter()
                    .map(|n| Reply::bulk(Bytes::copy_from_slice(n.as_bytes())))
                    .collect(),
            )
        }
        _ => Reply::err(
            "RINGKV subcommands: QUORUM [R W [strict|sloppy]] | PREFLIST key | LOCAL key | NODES",
        ),
    }
}
