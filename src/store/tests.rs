//! Tests of the store: merging in any order (property-tested), the counters, and
//! the incremental leaf digests. A module of its own to keep `store.rs`
//! short enough to read in one go.

use super::*;
use crate::clock::Timestamp;
use proptest::prelude::*;

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

/// The stored view of a plain string or tombstone.
fn simple_ref(e: &Entry) -> EntryRef<'_> {
    EntryRef {
        version: e.version(),
        body: Body::Simple(e.as_simple().expect("a simple entry")),
    }
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (0u64..8, 0u64..3, proptest::option::of(0u8..3))
        .prop_map(|(ts, node, v)| entry(ts, node, v.map(|b| [b]).as_ref().map(|b| &b[..])))
}

proptest! {
    #[test]
    fn store_holds_the_merge_of_what_it_was_given_in_any_order(
        entries in proptest::collection::vec(arb_entry(), 1..12)
    ) {
        let key = Bytes::from_static(b"k");
        let forward = Store::new();
        let backward = Store::new();
        for e in &entries { forward.apply(&key, e.clone()); }
        for e in entries.iter().rev() { backward.apply(&key, e.clone()); }
        let winner = entries.iter().cloned().reduce(|a, b| a.merge(&b)).unwrap();
        prop_assert_eq!(forward.get(b"k"), Some(winner.clone()));
        prop_assert_eq!(backward.get(b"k"), Some(winner.clone()));
        prop_assert_eq!(forward.live_len(), usize::from(!winner.is_tombstone()));
    }
}

#[test]
fn apply_reports_change_and_liveness() {
    let s = Store::new();
    let k = Bytes::from_static(b"k");
    let first = s.apply(&k, entry(1, 1, Some(b"a")));
    assert_eq!((first.changed, first.was_live), (true, false));
    assert_eq!(s.bytes(), 1 + 1 + 32);
    let stale = s.apply(&k, entry(0, 9, Some(b"b")));
    assert_eq!(
        (stale.changed, stale.was_live, stale.needs_log()),
        (false, true, false)
    );
    let again = s.apply(&k, entry(1, 1, Some(b"a")));
    assert!(again.duplicate && again.needs_log());
    let del = s.apply(&k, entry(2, 1, None));
    assert_eq!((del.changed, del.was_live), (true, true));
    assert_eq!(s.live_len(), 0);
    assert_eq!(s.len(), 1);
    assert_eq!(s.bytes(), 1 + 32);
    s.purge_tombstones(Timestamp(u64::MAX));
    assert_eq!(s.bytes(), 0);
}

/// After FLUSHALL's marker the store reads as empty at once, its live
/// count included, before the sweep that reclaims the memory has run: INFO
/// keyspace once showed a flushed key (found by `tests/differential.rs` on
/// a busy machine).
#[test]
fn a_flush_empties_the_live_count_before_its_sweep() {
    let s = Store::new();
    for (i, k) in ["a", "b", "c"].iter().enumerate() {
        s.apply(
            &Bytes::from_static(k.as_bytes()),
            entry(10 + i as u64, 1, Some(b"v")),
        );
    }
    assert_eq!(s.live_len(), 3);
    assert!(s.flush_before(Timestamp(11)));
    s.apply(&Bytes::from_static(b"d"), entry(20, 1, Some(b"v")));
    assert_eq!(s.live_len(), 2, "c and d, before the sweep");
    assert_eq!(s.sweep_flushed(), 2);
    assert_eq!(s.live_len(), 2, "c and d, after it");
    assert_eq!(s.len(), 2);
    // A store that opens under a marker (a restart after a FLUSHALL) is
    // swept while empty, and counts live keys by its counter after that.
    let reopened = Store::new();
    reopened.flush_before(Timestamp(11));
    assert_eq!(reopened.sweep_flushed(), 0);
    assert!(reopened.swept.load(Ordering::Relaxed) >= reopened.flushed.load(Ordering::Relaxed));
}

#[test]
fn tombstones_are_purged_only_after_the_grace_period() {
    let s = Store::new();
    s.apply(&Bytes::from_static(b"old"), entry(10, 1, None));
    s.apply(&Bytes::from_static(b"new"), entry(50, 1, None));
    s.apply(&Bytes::from_static(b"live"), entry(5, 1, Some(b"v")));
    assert_eq!(s.purge_tombstones(Timestamp(20)), 1);
    assert!(s.get(b"old").is_none());
    assert!(s.get(b"new").is_some());
    assert!(s.get(b"live").is_some());
}

#[test]
fn remove_if_version_keeps_newer_writes() {
    let s = Store::new();
    let k = Bytes::from_static(b"k");
    s.apply(&k, entry(1, 1, Some(b"a")));
    s.apply(&k, entry(2, 1, Some(b"b")));
    assert!(!s.remove_if_version(b"k", entry(1, 1, None).version()));
    assert!(s.remove_if_version(b"k", entry(2, 1, None).version()));
    assert_eq!(s.live_len(), 0);
}

#[test]
fn leaf_digests_track_every_change_incrementally() {
    let s = Store::new();
    let k = Bytes::from_static(b"key");
    let leaf = leaf_of(&Token::of(b"key"));
    assert_eq!(s.leaf_digest(leaf), 0);
    s.apply(&k, entry(1, 1, Some(b"a")));
    let one = s.leaf_digest(leaf);
    assert_eq!(
        one,
        entry_hash(&Token::of(b"key"), simple_ref(&entry(1, 1, Some(b"zz")))),
        "the value is not hashed, the version is"
    );
    s.apply(&k, entry(2, 1, None));
    assert_eq!(
        s.leaf_digest(leaf),
        entry_hash(&Token::of(b"key"), simple_ref(&entry(2, 1, None)))
    );
    s.purge_tombstones(Timestamp(10));
    assert_eq!(s.leaf_digest(leaf), 0);
    assert_eq!((s.len(), s.bytes(), s.live_len()), (0, 0, 0));
}

#[test]
fn equal_contents_give_equal_digests_in_any_order() {
    let (a, b) = (Store::new(), Store::new());
    let keys: Vec<Bytes> = (0..500u32).map(|i| Bytes::from(i.to_string())).collect();
    for (i, k) in keys.iter().enumerate() {
        a.apply(k, entry(i as u64, 1, Some(b"v")));
    }
    for (i, k) in keys.iter().enumerate().rev() {
        b.apply(k, entry(0, 1, Some(b"old")));
        b.apply(k, entry(i as u64, 1, Some(b"v")));
    }
    assert!((0..LEAVES).all(|l| a.leaf_digest(l) == b.leaf_digest(l)));
    b.apply(&keys[7], entry(1000, 1, None));
    assert_eq!(
        (0..LEAVES)
            .filter(|&l| a.leaf_digest(l) != b.leaf_digest(l))
            .count(),
        1
    );
}

#[test]
fn the_at_variants_agree_with_the_plain_ones() {
    let s = Store::new();
    let pos = Token::of(b"k");
    assert!(s.apply_at(&pos, b"k", &entry(1, 1, Some(b"a"))).changed);
    assert_eq!(s.get(b"k"), Some(entry(1, 1, Some(b"a"))));
    s.apply(b"k", entry(2, 1, Some(b"b")));
    assert_eq!(s.get_at(&pos, b"k"), Some(entry(2, 1, Some(b"b"))));
    assert_eq!(s.get_at(&Token::of(b"other"), b"other"), None);
}

/// One step of the model test: a write, a conditional remove, or a purge.
#[derive(Clone, Debug)]
enum Op {
    Apply(u8, Entry),
    RemoveIf(u8, Version),
    Purge(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    let key = 0u8..24;
    let value = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40));
    let write = (key.clone(), 0u64..50, 0u64..3, value)
        .prop_map(|(k, ts, node, v)| Op::Apply(k, entry(ts, node, v.as_deref())));
    // Set deltas: a member added or removed, so rich states meet strings
    // and tombstones in the store's merge path.
    let member = (key.clone(), 0u64..50, 0u64..3, 0u8..4, any::<bool>()).prop_map(
        |(k, ts, node, m, present)| {
            let version = Version {
                ts: Timestamp(ts),
                node,
            };
            let mut rich = crate::values::Rich::default();
            rich.members.insert(
                Bytes::from(vec![m]),
                crate::values::Lww {
                    version,
                    value: present,
                },
            );
            Op::Apply(k, Entry::rich(rich))
        },
    );
    prop_oneof![
        6 => write,
        2 => member,
        1 => (key, 0u64..50, 0u64..3).prop_map(|(k, ts, node)| Op::RemoveIf(k, Version { ts: Timestamp(ts), node })),
        1 => (0u64..60).prop_map(Op::Purge),
    ]
}

fn key_of(k: u8) -> Vec<u8> {
    // Lengths from 0 to 160 bytes, so some keys need a two-byte varint.
    vec![k; usize::from(k) * 7]
}

proptest! {
    // Each case builds and scans a whole store (65,536 buckets): fewer cases, longer runs.
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn the_store_matches_a_plain_map_model(ops in proptest::collection::vec(arb_op(), 1..120)) {
        let s = Store::new();
        let mut model: std::collections::HashMap<Vec<u8>, Entry> = Default::default();
        for op in ops {
            match op {
                Op::Apply(k, e) => {
                    let key = key_of(k);
                    let old = model.get(&key).cloned();
                    let applied = s.apply(&key, e.clone());
                    prop_assert_eq!(applied.was_live, old.as_ref().is_some_and(|o| o.exists(crate::clock::wall_millis())));
                    let merged = Entry::merge_options(old.clone(), Some(&e)).expect("some");
                    prop_assert_eq!(applied.changed, old.as_ref() != Some(&merged));
                    model.insert(key, merged);
                }
                Op::RemoveIf(k, v) => {
                    let key = key_of(k);
                    let held = model.get(&key).is_some_and(|e| e.version() == v);
                    prop_assert_eq!(s.remove_if_version(&key, v), held);
                    if held {
                        model.remove(&key);
                    }
                }
                Op::Purge(before) => {
                    let n = model.len();
                    model.retain(|_, e| !(e.is_tombstone() && e.version().ts < Timestamp(before)));
                    for e in model.values_mut() {
                        e.purge_removed(Timestamp(before));
                    }
                    prop_assert_eq!(s.purge_tombstones(Timestamp(before)), n - model.len());
                }
            }
        }
        for (k, e) in &model {
            prop_assert_eq!(s.get(k), Some(e.clone()));
        }
        let mut seen = 0;
        let mut digests = vec![0u64; LEAVES];
        s.for_each(|k, e| {
            seen += 1;
            assert_eq!(model.get(k), Some(&e.to_entry()));
            let pos = Token::of(k);
            digests[leaf_of(&pos)] ^= entry_hash(&pos, e);
        });
        prop_assert_eq!(seen, model.len());
        prop_assert_eq!(s.len(), model.len());
        prop_assert_eq!(s.live_len(), model.values().filter(|e| !e.is_tombstone()).count());
        // Kept up to date write by write, it adds up to what is held.
        let mut bytes = 0;
        s.for_each(|k, e| bytes += weight(k, e));
        prop_assert_eq!(s.bytes(), bytes);
        prop_assert!((0..LEAVES).all(|l| s.leaf_digest(l) == digests[l]));
        let mut live = s.live_keys(0, |_| true);
        live.sort();
        let mut want: Vec<Bytes> = model.iter().filter(|(_, e)| e.exists(0)).map(|(k, _)| Bytes::copy_from_slice(k)).collect();
        want.sort();
        prop_assert_eq!(live, want);
    }
}

#[test]
fn a_long_pass_lends_a_large_cell_with_its_bucket_unlocked_and_a_small_one_locked() {
    let store = Store::new();
    let version = |ts| Version {
        ts: Timestamp(ts),
        node: 1,
    };
    // 1,100 fields of 1 KiB: past LARGE_CELL.
    let pairs: Vec<(Bytes, Bytes)> = (0..1100)
        .map(|i| (Bytes::from(format!("f{i}")), Bytes::from(vec![b'v'; 1024])))
        .collect();
    store.apply(b"big", Entry::hash_set(version(5), &pairs));
    store.apply(b"small", Entry::hash_set(version(6), &pairs[..2]));
    let want_big = store.get(b"big").expect("stored");
    let want_small = store.get(b"small").expect("stored");
    let mut lent = Vec::new();
    store.for_each_copying_large(|key, entry| {
        let bucket = store.bucket_at(&Token::of(key), key);
        // Whether the bucket's lock is free while `entry` is lent.
        let unlocked = bucket.tables.try_write().is_ok();
        let want = if key == b"big" {
            &want_big
        } else {
            &want_small
        };
        // (Compared here: a failure prints no megabyte of field values.)
        let same = entry.to_entry() == *want;
        lent.push((Bytes::copy_from_slice(key), same, unlocked));
    });
    lent.sort();
    assert_eq!(
        lent,
        vec![
            (Bytes::from_static(b"big"), true, true),
            (Bytes::from_static(b"small"), true, false),
        ]
    );
}

/// A typed write merges into its cell where the cell lies; when the merge
/// leaves a plain string, the key moves to the packed table, and the
/// digest, the byte count and the live count follow it.
#[test]
fn a_cell_merged_into_a_plain_string_is_packed_again() {
    let s = Store::new();
    let k = Bytes::from_static(b"k");
    let v = |ts| Version {
        ts: Timestamp(ts),
        node: 1,
    };
    let member = |name: &'static [u8], at, present| {
        let mut r = crate::values::Rich::default();
        r.members.insert(
            Bytes::from_static(name),
            crate::values::Lww {
                version: at,
                value: present,
            },
        );
        r
    };
    s.apply(&k, Entry::rich(member(b"a", v(10), true)));
    // In place: one more member.
    let added = s.apply(&k, Entry::rich(member(b"c", v(12), true)));
    assert_eq!((added.changed, added.was_live), (true, true));
    // A string that clears the set, with a member older than the clearing
    // (which the merge drops): nothing of the set is left.
    let mut over = member(b"b", v(5), true);
    over.cleared = v(20).just_before();
    over.string = Some(crate::values::Lww {
        version: v(20),
        value: Bytes::from_static(b"x"),
    });
    let over = Entry::rich(over);
    assert!(over.as_simple().is_none(), "a rich delta");
    let applied = s.apply(&k, over);
    assert_eq!((applied.changed, applied.was_live), (true, true));
    let plain = Entry::string(v(20), Bytes::from_static(b"x"));
    assert_eq!(s.get(&k), Some(plain.clone()));
    assert_eq!((s.len(), s.live_len()), (1, 1));
    assert_eq!(s.bytes(), weight(&k, simple_ref(&plain)));
    let pos = Token::of(&k);
    assert_eq!(
        s.leaf_digest(leaf_of(&pos)),
        entry_hash(&pos, simple_ref(&plain))
    );
}
