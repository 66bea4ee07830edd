//! The merge laws, over every shape an entry can take.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn version() -> impl Strategy<Value = Version> {
    // A small space, so that ties and equal versions happen. (No write has
    // version zero: the clock starts above it.)
    (1u64..8, 0u64..3).prop_map(|(ts, node)| Version {
        ts: Timestamp(ts),
        node,
    })
}

fn small_bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![Just("a"), Just("b"), Just("12"), Just("")]
        .prop_map(|s: &'static str| Bytes::from_static(s.as_bytes()))
}

fn lww<T: std::fmt::Debug + Clone + 'static>(
    value: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<Lww<T>>> {
    proptest::option::of((version(), value).prop_map(|(version, value)| Lww { version, value }))
}

fn shards() -> impl Strategy<Value = Shards> {
    proptest::collection::btree_map(
        0u64..3,
        (-5i64..5, version()).prop_map(|(total, version)| Shard { total, version }),
        0..3,
    )
}

fn field() -> impl Strategy<Value = Field> {
    (version(), lww(small_bytes()), shards()).prop_map(|(cleared, value, shards)| {
        let mut f = Field {
            cleared,
            value,
            shards,
        };
        f.prune_with(Version::ZERO);
        f
    })
}

fn rich() -> impl Strategy<Value = Rich> {
    (
        version(),
        lww(proptest::option::of(0u64..100)),
        lww(small_bytes()),
        shards(),
        proptest::collection::btree_map(small_bytes(), field(), 0..3),
        proptest::collection::btree_map(small_bytes(), lww(any::<bool>()), 0..3),
    )
        .prop_map(|(cleared, ttl, string, shards, fields, members)| {
            let members: BTreeMap<Bytes, Lww<bool>> = members
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            let mut r = Rich {
                cleared,
                ttl,
                string,
                shards,
                fields,
                members,
            };
            r.normalize();
            r
        })
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        version().prop_map(Entry::tombstone),
        (version(), small_bytes()).prop_map(|(v, b)| Entry::string(v, b)),
        rich().prop_map(Entry::rich),
    ]
}

fn merged(a: &Entry, b: &Entry) -> Entry {
    a.clone().merge(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn merge_is_commutative(a in entry(), b in entry()) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
    }

    #[test]
    fn merge_is_associative(a in entry(), b in entry(), c in entry()) {
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    }

    #[test]
    fn merge_is_idempotent(a in entry(), b in entry()) {
        prop_assert_eq!(merged(&a, &a), a.clone());
        let ab = merged(&a, &b);
        prop_assert_eq!(merged(&ab, &b), ab.clone());
        prop_assert_eq!(merged(&ab, &a), ab);
    }

    #[test]
    fn merge_in_reports_a_change_exactly_when_there_is_one(a in entry(), b in entry()) {
        let mut m = a.clone();
        let changed = m.merge_in(&b);
        prop_assert_eq!(changed, m != a);
    }

    #[test]
    fn simple_entries_merge_as_their_rich_forms_do(a in entry(), b in entry()) {
        // The fast path for strings and tombstones must agree with the
        // general merge.
        let mut rich = a.to_rich();
        rich.merge(&b.to_rich());
        prop_assert_eq!(merged(&a, &b), Entry::rich(rich));
    }

    #[test]
    fn the_version_is_the_newest_piece(a in entry(), b in entry()) {
        let m = merged(&a, &b);
        prop_assert_eq!(m.version(), a.version().max(b.version()));
    }

    #[test]
    fn canonical_form_is_stable(a in entry()) {
        prop_assert_eq!(Entry::rich(a.to_rich()), a);
    }

    #[test]
    fn equal_entries_summarise_alike(a in entry(), b in entry()) {
        let (ab, ba) = (merged(&a, &b), merged(&b, &a));
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        prop_assert_eq!(
            ab.as_ref(&mut s1).unwrap().summary(),
            ba.as_ref(&mut s2).unwrap().summary()
        );
    }

    #[test]
    fn a_tombstone_wins_over_every_older_piece(a in entry(), ts in 8u64..10) {
        let delete = Entry::tombstone(Version { ts: Timestamp(ts), node: 0 });
        let m = merged(&a, &delete);
        prop_assert!(m.is_tombstone(), "{:?}", m);
        prop_assert_eq!(m, delete);
    }
}

#[test]
fn last_writer_wins_between_strings_and_deletes() {
    let v = |ts| Version {
        ts: Timestamp(ts),
        node: 1,
    };
    let a = Entry::string(v(1), Bytes::from_static(b"a"));
    let b = Entry::string(v(2), Bytes::from_static(b"b"));
    let d = Entry::tombstone(v(3));
    assert_eq!(merged(&a, &b), b);
    assert_eq!(merged(&b, &d), d);
    assert_eq!(
        merged(&d, &Entry::string(v(4), Bytes::new())).as_simple(),
        Some(Simple::Str(b""))
    );
}

#[test]
fn just_before_is_the_greatest_smaller_version() {
    let v = Version {
        ts: Timestamp(10),
        node: 5,
    };
    assert!(v.just_before() < v);
    assert_eq!(v.just_before().node, 4);
    let zero_node = Version {
        ts: Timestamp(10),
        node: 0,
    };
    assert!(zero_node.just_before() < zero_node);
    assert!(
        zero_node.just_before()
            > Version {
                ts: Timestamp(9),
                node: u64::MAX - 1
            }
    );
}
