//! Tests of the store: the merge laws (property-tested), the counters, and
//! the incremental leaf digests. A module of its own to keep `store.rs`
//! short enough to read in one go.

use super::*;
use proptest::prelude::*;

fn entry(ts: u64, node: u64, value: Option<&'static [u8]>) -> Entry {
    Entry {
        version: Version {
            ts: Timestamp(ts),
            node,
        },
        value: value.map(Bytes::from_static),
    }
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (0u64..8, 0u64..3, proptest::option::of(0u8..3)).prop_map(|(ts, node, v)| Entry {
        version: Version {
            ts: Timestamp(ts),
            node,
        },
        value: v.map(|b| Bytes::from(vec![b])),
    })
}

proptest! {
    #[test]
    fn merge_is_commutative(a in arb_entry(), b in arb_entry()) {
        prop_assert_eq!(a.clone().merge(b.clone()), b.merge(a));
    }

    #[test]
    fn merge_is_associative(a in arb_entry(), b in arb_entry(), c in arb_entry()) {
        let left = a.clone().merge(b.clone()).merge(c.clone());
        let right = a.merge(b.merge(c));
        prop_assert_eq!(left, right);
    }

    #[test]
    fn merge_is_idempotent(a in arb_entry()) {
        prop_assert_eq!(a.clone().merge(a.clone()), a);
    }

    #[test]
    fn tombstone_never_loses_to_an_older_write(t in arb_entry(), w in arb_entry()) {
        let tomb = Entry { value: None, ..t };
        prop_assume!(w.version < tomb.version);
        prop_assert!(tomb.clone().merge(w.clone()).is_tombstone());
        prop_assert!(w.merge(tomb).is_tombstone());
    }

    #[test]
    fn store_holds_the_lww_winner_in_any_order(entries in proptest::collection::vec(arb_entry(), 1..12)) {
        let key = Bytes::from_static(b"k");
        let forward = Store::new();
        let backward = Store::new();
        for e in &entries { forward.apply(&key, e.clone()); }
        for e in entries.iter().rev() { backward.apply(&key, e.clone()); }
        let winner = entries.iter().cloned().reduce(Entry::merge).unwrap();
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
    assert!(!s.remove_if_version(b"k", entry(1, 1, None).version));
    assert!(s.remove_if_version(b"k", entry(2, 1, None).version));
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
        entry_hash(&Token::of(b"key"), &entry(1, 1, Some(b"zz"))),
        "the value is not hashed, the version is"
    );
    s.apply(&k, entry(2, 1, None));
    assert_eq!(
        s.leaf_digest(leaf),
        entry_hash(&Token::of(b"key"), &entry(2, 1, None))
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
