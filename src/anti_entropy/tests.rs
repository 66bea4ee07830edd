//! The anti-entropy steps between in-memory stores, with real encodings
//! for the byte counts.

use bytes::Bytes;
use proptest::prelude::*;

use super::digest::*;
use super::{wire_size, RoundReport};
use crate::clock::Timestamp;
use crate::message::PeerMsg;
use crate::ring::{NodeName, Ring, Token};
use crate::store::{Entry, Store, Version, LEAVES};

fn entry(ts: u64, node: u64, value: Option<&[u8]>) -> Entry {
    let version = Version {
        ts: Timestamp(ts),
        node,
    };
    match value {
        Some(v) => Entry::string(version, Bytes::copy_from_slice(v)),
        None => Entry::tombstone(version),
    }
}

fn everything() -> Ranges {
    Ranges(vec![(Token::MIN, Token::MAX)])
}

fn round(a: &Store, b: &Store, ranges: &Ranges) -> RoundReport {
    super::local::round(a, b, ranges, None)
}

fn round_with(a: &Store, b: &Store, ranges: &Ranges, by_sections: Option<usize>) -> RoundReport {
    super::local::round(a, b, ranges, by_sections)
}

fn same(a: &Store, b: &Store) -> bool {
    let mut all = true;
    a.for_each(|k, e| all &= b.get(k) == Some(e.to_entry()));
    all && a.len() == b.len()
}

#[test]
fn a_sync_of_100k_keys_with_100_changed_moves_those_100() {
    let (a, b) = (Store::new(), Store::new());
    let value = [7u8; 64];
    for i in 0..100_000u32 {
        let k = Bytes::from(format!("key:{i}"));
        a.apply(&k, entry(1, 1, Some(&value)));
        b.apply(&k, entry(1, 1, Some(&value)));
    }
    // 100 keys changed on b only: 60 overwritten, 20 deleted, 20 new.
    for i in 0..60u32 {
        b.apply(
            &Bytes::from(format!("key:{}", i * 997)),
            entry(2, 2, Some(b"new")),
        );
    }
    for i in 0..20u32 {
        b.apply(
            &Bytes::from(format!("key:{}", 50_000 + i * 13)),
            entry(2, 2, None),
        );
    }
    for i in 0..20u32 {
        b.apply(&Bytes::from(format!("fresh:{i}")), entry(2, 2, Some(b"v")));
    }
    let full_transfer = wire_size(&PeerMsg::Transfer {
        id: 0,
        items: (0..100_000u32)
            .map(|i| (Bytes::from(format!("key:{i}")), entry(1, 1, Some(&value))))
            .collect(),
    });
    let r = round(&a, &b, &everything());
    assert_eq!(
        (r.keys_received, r.keys_sent),
        (100, 0),
        "exactly the changed entries moved"
    );
    assert!(same(&a, &b), "replicas end identical");
    let bytes = r.bytes_sent + r.bytes_received;
    eprintln!("100 of 100k keys differ: {} leaves, {bytes} bytes vs {full_transfer} for a full transfer ({:.3} %)", r.differing_leaves, 100.0 * bytes as f64 / full_transfer as f64);
    assert!(bytes * 100 < full_transfer, "under 1 % of a full transfer");
    // A second round finds nothing and costs only the root digests.
    let again = round(&a, &b, &everything());
    assert_eq!(again.differing_leaves, 0);
    assert!(again.bytes_sent + again.bytes_received < 100);
}

#[test]
fn the_root_digest_tells_one_changed_entry_apart() {
    let (a, b) = (Store::new(), Store::new());
    for i in 0..10_000u32 {
        let k = Bytes::from(format!("key:{i}"));
        a.apply(&k, entry(1, 1, Some(b"v")));
        b.apply(&k, entry(1, 1, Some(b"v")));
    }
    let all = everything();
    assert_eq!(root_digest(&a, &all), root_digest(&b, &all));
    // A newer version, a tombstone, or one more key: each differs.
    for change in [entry(2, 1, Some(b"v")), entry(2, 1, None)] {
        let c = Store::new();
        a.for_each(|k, e| {
            c.apply(k, e.to_entry());
        });
        c.apply(&Bytes::from_static(b"key:77"), change);
        assert_ne!(root_digest(&a, &all), root_digest(&c, &all));
    }
    b.apply(&Bytes::from_static(b"extra"), entry(1, 1, Some(b"v")));
    assert_ne!(root_digest(&a, &all), root_digest(&b, &all));
    // Two sides that work out different ranges never agree.
    let half = Ranges(vec![(Token::MIN, Token([0x80; 20]))]);
    assert_ne!(all.fingerprint(), half.fingerprint());
    assert_eq!(half.fingerprint(), half.clone().fingerprint());
    assert_ne!(all.fingerprint(), Ranges(Vec::new()).fingerprint());
}

#[test]
fn shared_ranges_cover_exactly_the_keys_both_replicate() {
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let ring = Ring::new(names.map(NodeName::from), 1);
    for a in names {
        for b in names {
            let shared = shared_ranges(&ring, a, b, 3);
            let mine = ranges_of(&ring, a, 3);
            for k in 0..2000u32 {
                let key = k.to_be_bytes();
                let pref = ring.preference_list_for_key(&key, 3);
                let holds = |n: &str| pref.iter().any(|x| &**x == n);
                assert_eq!(
                    shared.contains(&Token::of(&key)),
                    holds(a) && holds(b),
                    "{a} {b} key {k}"
                );
                assert_eq!(mine.contains(&Token::of(&key)), holds(a));
            }
        }
    }
}

#[test]
fn boundary_leaves_are_compared_only_within_the_ranges() {
    // b holds extra keys outside the ranges: they must not count as differences.
    let (a, b) = (Store::new(), Store::new());
    let ranges = Ranges(vec![(Token([0x40; 20]), Token([0x80; 20]))]);
    for i in 0..20_000u32 {
        let k = Bytes::from(i.to_string());
        let e = entry(1, 1, Some(b"v"));
        if ranges.contains(&Token::of(&k)) {
            a.apply(&k, e.clone());
        }
        b.apply(&k, e);
    }
    let r = round(&a, &b, &ranges);
    assert_eq!(
        (r.differing_leaves, r.keys_received, r.keys_sent),
        (0, 0, 0)
    );
    assert!(ranges.leaves().len() < LEAVES / 3);
}

/// A write: (key index, value or delete, which of three replicas got it).
fn arb_write() -> impl Strategy<Value = (u8, Option<u8>, u8)> {
    (0u8..40, proptest::option::of(any::<u8>()), 1u8..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random writes and deletes land on random subsets of three replicas
    /// (partitions, lost messages, a replica that was down); some replicas
    /// restart empty-handed from what they held (no effect on the laws).
    /// After rounds between every pair, all three are identical and equal
    /// to the LWW winner of every write.
    #[test]
    fn pairwise_rounds_converge_to_the_lww_winner(writes in proptest::collection::vec(arb_write(), 1..120)) {
        let stores = [Store::new(), Store::new(), Store::new()];
        let mut winner: std::collections::HashMap<Bytes, Entry> = Default::default();
        for (i, (k, v, mask)) in writes.iter().enumerate() {
            let key = Bytes::from(format!("k{k}"));
            let e = entry(i as u64 + 1, u64::from(*mask), v.map(|b| vec![b]).as_deref());
            for (r, s) in stores.iter().enumerate() {
                if mask & (1 << r) != 0 {
                    s.apply(&key, e.clone());
                }
            }
            let w = winner.remove(&key).map_or(e.clone(), |old| old.merge(&e));
            winner.insert(key, w);
        }
        for (x, y) in [(0, 1), (1, 2), (0, 2)] {
            round(&stores[x], &stores[y], &everything());
        }
        // Agreement now shows at the root, in one exchange.
        prop_assert_eq!(round(&stores[0], &stores[1], &everything()).differing_leaves, 0);
        prop_assert_eq!(root_digest(&stores[0], &everything()), root_digest(&stores[2], &everything()));
        for s in &stores {
            prop_assert_eq!(s.len(), winner.len());
            for (k, e) in &winner {
                prop_assert_eq!(s.get(k), Some(e.clone()));
            }
        }
    }
}

/// A hash whose fields `names` were each written at `ts` by node 1.
fn hash_with(names: impl Iterator<Item = String>, ts: u64) -> Entry {
    let mut r = crate::values::Rich::default();
    for name in names {
        let value = Some(crate::values::Lww {
            version: Version {
                ts: Timestamp(ts),
                node: 1,
            },
            value: Bytes::from_static(&[7; 32]),
        });
        r.fields.insert(
            Bytes::from(name),
            crate::values::Field {
                value,
                ..Default::default()
            },
        );
    }
    Entry::rich(r)
}

fn hash_of(n: u32, ts: u64) -> Entry {
    hash_with((0..n).map(|i| format!("field:{i}")), ts)
}

#[test]
fn a_large_hash_that_differs_by_a_field_each_way_moves_two_sections_not_the_hash() {
    let key = Bytes::from_static(b"big");
    let mut totals = Vec::new();
    for by_sections in [None, Some(64 * 1024)] {
        let (a, b) = (Store::new(), Store::new());
        a.apply(&key, hash_of(20_000, 1));
        b.apply(&key, hash_of(20_000, 1));
        // Each side missed a write the other took: a new field, an update.
        a.apply(&key, hash_with(std::iter::once("only-a".to_string()), 5));
        b.apply(&key, hash_of(1, 6));
        let r = round_with(&a, &b, &everything(), by_sections);
        assert!(same(&a, &b), "replicas end identical");
        assert_eq!(
            a.get(&key).unwrap().summary(),
            b.get(&key).unwrap().summary()
        );
        let again = round_with(&a, &b, &everything(), by_sections);
        assert_eq!(again.differing_leaves, 0);
        totals.push(r.bytes_sent + r.bytes_received);
    }
    eprintln!(
        "20,000-field hash, two fields apart: whole {} bytes, by sections {} bytes",
        totals[0], totals[1]
    );
    assert!(totals[0] > 1_000_000, "the whole hash went both ways");
    assert!(
        totals[1] * 50 < totals[0],
        "sections move under 2 % of that"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random rich and simple writes land on random subsets of three
    /// replicas; rounds by sections (every rich state counts as large)
    /// leave all three equal to the merge of every write.
    #[test]
    fn rounds_by_sections_converge_to_the_merge(writes in proptest::collection::vec(
        (0u8..6, crate::values::tests::entry(), 1u8..8), 1..30)) {
        let stores = [Store::new(), Store::new(), Store::new()];
        let mut merged: std::collections::HashMap<Bytes, Entry> = Default::default();
        for (k, e, mask) in &writes {
            let key = Bytes::from(format!("k{k}"));
            for (r, s) in stores.iter().enumerate() {
                if mask & (1 << r) != 0 {
                    s.apply(&key, e.clone());
                }
            }
            let m = merged.remove(&key).map_or(e.clone(), |old| old.merge(e));
            merged.insert(key, m);
        }
        for (x, y) in [(0, 1), (1, 2), (0, 2)] {
            round_with(&stores[x], &stores[y], &everything(), Some(0));
        }
        prop_assert_eq!(round_with(&stores[0], &stores[1], &everything(), Some(0)).differing_leaves, 0);
        for s in &stores {
            for (k, e) in &merged {
                prop_assert_eq!(s.get(k).map(|g| g.summary()), Some(e.summary()));
            }
        }
    }
}
