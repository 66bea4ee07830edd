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
//! Then one hash of a million fields, one field apart on each side: a
//! round moving it whole (as before protocol 12), and one by sections.
//!
//!     cargo bench --bench ae_convergence            # KEYS=1000000, FIELDS=1000000 by default

use std::time::Instant;

use bytes::Bytes;
use ringkv::anti_entropy::digest::Ranges;
use ringkv::anti_entropy::wire_size;
use ringkv::clock::Timestamp;
use ringkv::message::PeerMsg;
use ringkv::ring::Token;
use ringkv::store::{Entry, Store, Version};
use ringkv::values::{Field, Lww, Rich};

fn entry(ts: u64, node: u64, value: &[u8]) -> Entry {
    let version = Version {
        ts: Timestamp(ts),
        node,
    };
    Entry::string(version, Bytes::copy_from_slice(value))
}

/// One round, `a` starting; returns (bytes, entries moved).
fn round(a: &Store, b: &Store, ranges: &Ranges, by_sections: Option<usize>) -> (u64, u64) {
    let r = ringkv::anti_entropy::local::round(a, b, ranges, by_sections);
    (
        r.bytes_sent + r.bytes_received,
        r.keys_sent + r.keys_received,
    )
}

/// A hash of `n` fields (`field:0`..), 32-byte values, written at `ts`.
fn hash_of(names: impl Iterator<Item = String>, ts: u64) -> Entry {
    let version = Version {
        ts: Timestamp(ts),
        node: 1,
    };
    let mut r = Rich::default();
    for name in names {
        let value = Some(Lww {
            version,
            value: Bytes::from_static(&[b'v'; 32]),
        });
        let field = Field {
            value,
            ..Default::default()
        };
        r.fields.insert(Bytes::from(name), field);
    }
    Entry::rich(r)
}

/// One hash of `FIELDS` fields on two replicas, each side with one field
/// the other lacks: a round moving the hash whole (protocol 11), then one
/// by sections (protocol 12).
fn large_hash(everything: &Ranges) {
    let n: usize = std::env::var("FIELDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let key = Bytes::from_static(b"big");
    println!("one hash of {n} fields (32-byte values), one field apart each way");
    println!("{:>12} {:>12} {:>10}", "round", "bytes", "time ms");
    for (name, by_sections) in [("whole", None), ("sections", Some(64 * 1024))] {
        let (a, b) = (Store::new(), Store::new());
        let all = hash_of((0..n).map(|i| format!("field:{i}")), 1);
        a.apply(&key, all.clone());
        b.apply(&key, all);
        a.apply(&key, hash_of(std::iter::once("only-a".into()), 2));
        b.apply(&key, hash_of(std::iter::once("only-b".into()), 3));
        let t = Instant::now();
        let (bytes, _) = round(&a, &b, everything, by_sections);
        let elapsed = t.elapsed();
        assert_eq!(
            a.get(&key).map(|e| e.summary()),
            b.get(&key).map(|e| e.summary())
        );
        println!(
            "{name:>12} {bytes:>12} {:>10.1}",
            elapsed.as_secs_f64() * 1e3
        );
    }
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
        let (bytes, moved) = round(&a, &b, &everything, None);
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
    large_hash(&everything);
}
