//! ringkv's own client commands: `RINGKV ...` and `INFO`.
//!
//! - `RINGKV QUORUM` shows this connection's read and write quorums;
//!   `RINGKV QUORUM R W` sets them for this connection only (each between 1
//!   and the replication factor).
//! - `RINGKV PREFLIST KEY` lists the nodes that hold KEY, owner first, as
//!   this node's current ring places them.
//! - `RINGKV LOCAL KEY` shows what *this node* holds for KEY, without
//!   asking anyone: `[value-or-nil, timestamp, writer-id, "live"|"tombstone"]`,
//!   or nil when it holds nothing. Tests use it to check placement.
//! - `RINGKV NODES` lists the nodes this node sees up.

use std::sync::Arc;

use bytes::Bytes;

use crate::coordinator::Quorum;
use crate::node::shared::Shared;
use crate::resp::codec::Reply;
use crate::resp::commands::ConnState;

/// Runs `RINGKV <sub> ...`.
pub fn run(shared: &Arc<Shared>, conn: &mut ConnState, args: &[Bytes]) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
    match (sub.as_deref(), args.len()) {
        (Some("QUORUM"), 2) => Reply::Array(vec![
            Reply::Integer(conn.quorum.r as i64),
            Reply::Integer(conn.quorum.w as i64),
        ]),
        (Some("QUORUM"), 4) => {
            let parse = |b: &Bytes| {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
            };
            let n = shared.cfg.replication;
            match (parse(&args[2]), parse(&args[3])) {
                (Some(r), Some(w)) if (1..=n).contains(&r) && (1..=n).contains(&w) => {
                    conn.quorum = Quorum { r, w };
                    Reply::ok()
                }
                _ => Reply::err(format!(
                    "RINGKV QUORUM R W needs two integers between 1 and the replication factor {n}"
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
        (Some("LOCAL"), 3) => match shared.store.get(&args[2]) {
            None => Reply::NilArray,
            Some(e) => Reply::Array(vec![
                e.value.clone().map_or(Reply::Nil, Reply::Bulk),
                Reply::Integer(e.version.ts.0 as i64),
                Reply::bulk(e.version.node.to_string()),
                Reply::simple(if e.is_tombstone() {
                    "tombstone"
                } else {
                    "live"
                }),
            ]),
        },
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
        _ => Reply::err("RINGKV subcommands: QUORUM [R W] | PREFLIST key | LOCAL key | NODES"),
    }
}

/// `INFO`: Redis-style sections, with ringkv's own.
pub fn info(shared: &Shared) -> Reply {
    let view = shared.view.load();
    let text = format!(
        "# Server\r\nredis_version:7.0.0\r\nringkv_version:{}\r\nredis_mode:standalone\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\n\
         \r\n# Keyspace\r\ndb0:keys={},expires=0\r\n\
         \r\n# Ringkv\r\nnode:{}\r\ngeneration:{}\r\nnodes_up:{}\r\nreplication:{}\r\nread_quorum:{}\r\nwrite_quorum:{}\r\nentries_held:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        shared.started.elapsed().as_secs(),
        shared.store.live_len(),
        shared.me,
        shared.generation,
        view.ring.nodes().len(),
        shared.cfg.replication,
        shared.cfg.read_quorum,
        shared.cfg.write_quorum,
        shared.store.len(),
    );
    Reply::bulk(text)
}
