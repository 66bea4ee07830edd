//! Anti-entropy convergence: time and bytes to reconcile two replicas of
//! 1 million keys (64-byte values) with 0.01 %, 1 % and 10 % of them
//! diverged, next to a full transfer of the same data.
//!
//! Runs the protocol's steps between two in-memory stores exactly as the
//! network driver runs them, counting every message's encoded size; the
//! time is the compute time of the whole round (digests, comparisons,
//! encoding and merging), without network latency (add about one loopback
//! round trip per message: 4 or 5 messages for a small divergence).
//!
//!     cargo bench --bench ae_convergence            # KEYS=1000000 by default

use std::time::Instant;

use bytes::Bytes;
use ringkv::anti_entropy::digest::*;
use ringkv::anti_entropy::wire_size;
use ringkv::clock::Timestamp;
use ringkv::message::PeerMsg;
use ringkv::ring::Token;
use ringkv::store::{Entry, Store, Version};

fn entry(ts: u64, node: u64, value: &[u8]) -> Entry {
    let version = Version {
        ts: Timestamp(ts),
        node,
    };
    Entry::string(version, Bytes::copy_from_slice(value))
}

/// One round, `a` starting; returns (bytes, entries moved).
fn round(a: &Store, b: &Store, ranges: &Ranges) -> (u64, u64) {
    let mut bytes = 0;
    let mut moved = 0;
    let groups = group_digests(a, ranges);
    bytes += wire_size(&PeerMsg::AeGroups {
        id: 1,
        ranges: ranges.clone(),
        groups: groups.clone(),
    });
    let leaves = leaves_of_differing_groups(b, ranges, &groups);
    bytes += wire_size(&PeerMsg::AeGroupsReply {
        id: 1,
        leaves: leaves.clone(),
    });
    let differing = differing_leaves(a, ranges, &leaves);
    for chunk in differing.chunks(256) {
        let keys = summaries(a, ranges, chunk);
        let (push, want) = exchange(b, ranges, chunk, &keys);
        bytes += wire_size(&PeerMsg::AeKeys {
            id: 2,
            ranges: ranges.clone(),
            leaves: chunk.to_vec(),
            keys,
        });
        bytes += wire_size(&PeerMsg::AeKeysReply {
            id: 2,
            push: push.clone(),
            want: want.clone(),
        });
        moved += push.len() as u64;
        for (k, e) in push {
            a.apply(&k, e);
        }
        let items = entries(a, &want);
        moved += items.len() as u64;
        for batch in items.chunks(512) {
            bytes += wire_size(&PeerMsg::Transfer {
                id: 3,
                items: batch.to_vec(),
            });
        }
        for (k, e) in items {
            b.apply(&k, e);
        }
    }
    (bytes, moved)
}

fn main() {
    let n: usize = std::env::var("KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let value = [b'v'; 64];
    let keys: Vec<Bytes> = (0..n).map(|i| Bytes::from(format!("key:{i:08}"))).collect();
    let everything = Ranges(vec![(Token::MIN, Token::MAX)]);
    let t = Instant::now();
    let mut full_bytes = 0u64;
    for batch in keys.chunks(512) {
        let items: Vec<(Bytes, Entry)> = batch
            .iter()
            .map(|k| (k.clone(), entry(1, 1, &value)))
            .collect();
        full_bytes += wire_size(&PeerMsg::Transfer { id: 0, items });
    }
    let full_encode = t.elapsed();
    println!("keys: {n}, 64-byte values; full transfer: {full_bytes} bytes ({:.1} MB), encoding alone {:.0} ms", full_bytes as f64 / 1e6, full_encode.as_secs_f64() * 1e3);
    println!(
        "{:>10} {:>10} {:>12} {:>10} {:>10}",
        "diverged", "entries", "bytes", "% of full", "time ms"
    );
    for pct in [0.01, 1.0, 10.0] {
        let (a, b) = (Store::new(), Store::new());
        for k in &keys {
            a.apply(k, entry(1, 1, &value));
            b.apply(k, entry(1, 1, &value));
        }
        let diverged = ((n as f64) * pct / 100.0).round() as usize;
        let stride = n / diverged.max(1);
        for i in 0..diverged {
            b.apply(&keys[i * stride], entry(2, 2, &value));
        }
        let t = Instant::now();
        let (bytes, moved) = round(&a, &b, &everything);
        let elapsed = t.elapsed();
        assert_eq!(moved as usize, diverged);
        println!(
            "{:>9}% {:>10} {:>12} {:>9.3}% {:>10.1}",
            pct,
            moved,
            bytes,
            100.0 * bytes as f64 / full_bytes as f64,
            elapsed.as_secs_f64() * 1e3
        );
    }
}
