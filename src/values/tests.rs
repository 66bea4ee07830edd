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

/// Calls `f` with `current` lent as the store would lend it (a simple
/// shape, or a cell).
pub(super) fn lend<R>(current: Option<&Entry>, f: impl FnOnce(Option<EntryRef<'_>>) -> R) -> R {
    let cell = current.and_then(|e| {
        e.as_simple()
            .is_none()
            .then(|| Cell::new(b"k", &e.to_rich()))
    });
    let lent = current.map(|e| EntryRef {
        version: e.version(),
        body: match (&cell, e.as_simple()) {
            (Some(c), _) => Body::Rich(c),
            (None, Some(s)) => Body::Simple(s),
            (None, None) => unreachable!("a rich entry has a cell"),
        },
    });
    f(lent)
}

/// `Entry::increment` of INCR on an owned entry, lent as the store would.
pub(super) fn incr(
    current: Option<&Entry>,
    identity: u64,
    by: i64,
    version: Version,
    now_ms: u64,
) -> Result<(Entry, i64), IncrError> {
    lend(current, |lent| {
        Entry::increment(lent, None, identity, by, version, now_ms)
    })
}

pub(crate) fn small_bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![Just("a"), Just("b"), Just("12"), Just("")]
        .prop_map(|s: &'static str| Bytes::from_static(s.as_bytes()))
}

/// Names from a larger set than [`small_bytes`]: enough for a map past
/// a small map's size, with the small names among them so that states
/// still share some.
fn many_bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        small_bytes(),
        (0u8..30).prop_map(|i| Bytes::from(format!("k{i}"))),
    ]
}

fn lww<T: std::fmt::Debug + Clone + 'static>(
    value: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<Lww<T>>> {
    proptest::option::of((version(), value).prop_map(|(version, value)| Lww { version, value }))
}

/// The share of identity `id` after the first `k` increments of one fixed
/// history of that identity: every state of a share that replicas can hold
/// is a state its owner wrote (or one cut from it), so two entries holding
/// one version of a share hold the same increments.
fn shard_of(id: u64, k: usize) -> Shard {
    let mut s: Option<Shard> = None;
    let mut total = 0;
    for (ts, by) in [(2u64, 3i64), (4, -2), (6, 5)].into_iter().take(k) {
        let v = Version {
            ts: Timestamp(ts + id % 2),
            node: id,
        };
        total += by + id as i64;
        s = Some(match s {
            None => Shard::first(total, v),
            Some(s) => s.then(total, v),
        });
    }
    s.expect("one increment at least")
}

fn shards() -> impl Strategy<Value = Shards> {
    proptest::collection::btree_map(0u64..3, 1usize..=3, 0..3)
        .prop_map(|m| m.into_iter().map(|(id, k)| (id, shard_of(id, k))).collect())
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

pub(crate) fn rich() -> impl Strategy<Value = Rich> {
    (
        version(),
        lww(proptest::option::of(0u64..100)),
        lww(small_bytes()),
        shards(),
        // Mostly a few elements; sometimes more than a small map holds
        // (`values::sorted::SMALL`), so both of its forms are merged.
        prop_oneof![
            4 => proptest::collection::btree_map(small_bytes(), field(), 0..3),
            1 => proptest::collection::btree_map(many_bytes(), field(), 0..24),
        ],
        prop_oneof![
            4 => proptest::collection::btree_map(small_bytes(), lww(any::<bool>()), 0..3),
            1 => proptest::collection::btree_map(many_bytes(), lww(any::<bool>()), 0..24),
        ],
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
                fields: fields.into_iter().collect(),
                members: members.into_iter().collect(),
            };
            r.normalize();
            r
        })
}

pub(crate) fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        version().prop_map(Entry::tombstone),
        (version(), small_bytes()).prop_map(|(v, b)| Entry::string(v, b)),
        rich().prop_map(Entry::rich),
    ]
}

pub(super) fn merged(a: &Entry, b: &Entry) -> Entry {
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
    fn a_cell_merges_as_rich_does(a in entry(), deltas in proptest::collection::vec(entry(), 1..4)) {
        // The store's form of a rich state must merge exactly as the wire
        // form: same state, same answer to "changed?", same digest, same
        // type and counts, after every step.
        let mut cell = Cell::new(b"k", &a.to_rich());
        let mut rich = a.to_rich();
        for d in &deltas {
            let want_changed = rich.merge(&d.to_rich());
            prop_assert_eq!(cell.merge(&d.to_rich()), want_changed);
            prop_assert_eq!(cell.to_rich(), rich.clone());
            prop_assert_eq!(cell.encode(), crate::values::codec::encode(&rich).unwrap());
            let entry = Entry::rich(rich.clone());
            if entry.as_simple().is_none() {
                // (A simple state is packed again by the store.)
                prop_assert_eq!(cell.digest() | 2, entry.summary().body);
            }
            prop_assert_eq!(cell.version(), entry.version());
            for now in [0, 50, 200] {
                prop_assert_eq!(cell.kind(now), entry.kind(now));
            }
            prop_assert_eq!(cell.is_tombstone(), entry.is_tombstone());
            prop_assert_eq!(cell.simple(), entry.as_simple().map(|_| entry.clone()));
            prop_assert_eq!(cell.live_fields(), rich.fields.values().filter(|f| f.is_live()).count());
            prop_assert_eq!(cell.live_members(), rich.members.values().filter(|m| m.value).count());
        }
    }

    #[test]
    fn a_head_hashes_as_its_encoding_does(a in entry(), long in 0usize..1200) {
        // The head's hash is taken from an encoding on the stack (or, past
        // its size, on the heap): it must be the hash of the bytes, as
        // nodes of every release compute it.
        let mut rich = a.to_rich();
        if long > 600 {
            // A head too big for the stack buffer.
            rich.string = Some(Lww { version: rich.newest(), value: Bytes::from(vec![7u8; long]) });
        }
        let head = wire::HeadRef::of(&rich);
        let mut bytes = Vec::new();
        wire::encode_head_into(head, &mut bytes);
        prop_assert_eq!(bytes.len(), wire::fixed_len(head));
        prop_assert_eq!(
            cell::head_hash(head),
            crate::encoding::stable_hash(0x6865_6164, &bytes)
        );
    }

    #[test]
    fn a_part_is_the_whole_s_head_and_the_elements_asked(a in entry(), names in proptest::collection::vec(small_bytes(), 0..3)) {
        let rich = a.to_rich();
        let cell = Cell::new(b"k", &rich);
        let part = cell.part(&Want::Fields(names.clone()));
        prop_assert_eq!(part.digest, cell.digest());
        prop_assert_eq!(part.version, a.version());
        for name in &names {
            prop_assert_eq!(part.rich.fields.get(name), rich.fields.get(name));
        }
        prop_assert!(part.rich.members.is_empty());
        prop_assert_eq!(part.rich.string.clone(), rich.string.clone());
        let part = cell.part(&Want::Members(names.clone()));
        for name in &names {
            prop_assert_eq!(part.rich.members.get(name), rich.members.get(name));
        }
        prop_assert_eq!(a.part(&Want::Head), cell.part(&Want::Head));
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
        prop_assert_eq!(merged(&a, &b).summary(), merged(&b, &a).summary());
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

fn at(ts: u64, node: u64) -> Version {
    Version {
        ts: Timestamp(ts),
        node,
    }
}

/// The tie rules at one timestamp, as ScyllaDB documents them: dead beats
/// live, expiring beats non-expiring, a later deadline beats an earlier.
#[test]
fn expiry_ties_are_broken_dead_then_expiring_then_later() {
    let v = at(5, 1);
    let value = || Bytes::from_static(b"v");
    let live = Entry::set_string(v, value(), None);
    let expiring = Entry::set_string(v, value(), Some(1_000));
    let later = Entry::set_string(v, value(), Some(2_000));
    let dead = Entry::tombstone(v);
    for (a, b, winner) in [
        (&live, &dead, &dead),
        (&expiring, &dead, &dead),
        (&live, &expiring, &expiring),
        (&expiring, &later, &later),
    ] {
        assert_eq!(&merged(a, b), winner);
        assert_eq!(&merged(b, a), winner);
    }
    // Two expiry changes of one instant: the later deadline.
    let persist = Entry::set_expiry(at(6, 1), None);
    let expire = Entry::set_expiry(at(6, 1), Some(3_000));
    assert_eq!(
        merged(&merged(&live, &persist), &expire).deadline(),
        Some(3_000)
    );
    assert_eq!(
        merged(&merged(&live, &expire), &persist).deadline(),
        Some(3_000)
    );
}

/// An expiry change and a write of the value made concurrently (on two
/// sides of a partition) both survive when the write keeps the expiry;
/// a SET (which replaces the expiry) newer than the change drops it, an
/// older one keeps it.
#[test]
fn changing_only_the_expiry_never_loses_a_concurrent_value() {
    let base = Entry::string(at(1, 1), Bytes::from_static(b"old"));
    let expire = Entry::set_expiry(at(3, 1), Some(9_000));
    let set_before = Entry::set_string(at(2, 2), Bytes::from_static(b"new"), None);
    let m = merged(&merged(&base, &expire), &set_before);
    assert_eq!(m.string_value(0), Ok(Some(Bytes::from_static(b"new"))));
    assert_eq!(m.deadline(), Some(9_000));
    let set_after = Entry::set_string(at(4, 2), Bytes::from_static(b"newer"), None);
    let m = merged(&merged(&base, &expire), &set_after);
    assert_eq!(m.string_value(0), Ok(Some(Bytes::from_static(b"newer"))));
    assert_eq!(m.deadline(), None);
    assert_eq!(
        m, set_after,
        "a SET newer than everything is a plain string"
    );
}

/// An expired key reads as absent from its deadline on, and once reduced
/// to a tombstone it shadows every older version of the key, including
/// one without the expiry that a lagging replica kept.
#[test]
fn an_expired_key_is_absent_and_its_reclaimed_form_shadows_older_copies() {
    let old = Entry::string(at(1, 1), Bytes::from_static(b"v"));
    let expiring = merged(&old, &Entry::set_expiry(at(2, 1), Some(1_000)));
    assert!(expiring.exists(999));
    assert!(!expiring.exists(1_000));
    assert_eq!(expiring.string_value(1_000), Ok(None));
    assert_eq!(expiring.kind(1_000), None);
    let gone = expiring.reclaimed();
    assert!(gone.is_tombstone());
    assert_eq!(merged(&gone, &old), gone);
    assert_eq!(merged(&gone, &expiring), gone);
    // A write after the deadline brings the key back, as in Redis.
    let again = Entry::string(at(3, 2), Bytes::from_static(b"w"));
    assert_eq!(merged(&gone, &again), again);
}

/// Increments through two owners (two sides of a partition) all count
/// once their deltas merge, in any order; a string that is an integer is
/// the starting value; the errors are Redis's.
#[test]
fn increments_of_different_owners_all_count() {
    let start = Entry::string(at(1, 1), Bytes::from_static(b"10"));
    let mut a = start.clone();
    let mut b = start.clone();
    let mut deltas = Vec::new();
    for (i, (side, id, by)) in [(0, 7, 5i64), (1, 9, -2), (0, 7, 1), (1, 9, 4)]
        .iter()
        .enumerate()
    {
        let copy = if *side == 0 { &mut a } else { &mut b };
        let (delta, value) = incr(Some(copy), *id, *by, at(10 + i as u64, *id), 0).unwrap();
        copy.merge_in(&delta);
        assert_eq!(copy.string_value(0).unwrap().unwrap(), value.to_string());
        deltas.push(delta);
    }
    assert_eq!(a.string_value(0), Ok(Some(Bytes::from_static(b"16"))));
    assert_eq!(b.string_value(0), Ok(Some(Bytes::from_static(b"12"))));
    let healed = merged(&a, &b);
    assert_eq!(healed.string_value(0), Ok(Some(Bytes::from_static(b"18"))));
    let replayed = deltas.iter().rev().fold(start, |e, d| merged(&e, d));
    assert_eq!(replayed, healed);

    let text = Entry::string(at(1, 1), Bytes::from_static(b"x"));
    assert_eq!(
        incr(Some(&text), 1, 1, at(2, 1), 0),
        Err(IncrError::NotInteger)
    );
    let max = Entry::string(at(1, 1), Bytes::from(i64::MAX.to_string()));
    assert_eq!(
        incr(Some(&max), 1, 1, at(2, 1), 0),
        Err(IncrError::Overflow)
    );
    let mut set = Rich::default();
    set.members.insert(
        Bytes::from_static(b"m"),
        Lww {
            version: at(1, 1),
            value: true,
        },
    );
    assert_eq!(
        incr(Some(&Entry::rich(set)), 1, 1, at(2, 1), 0),
        Err(IncrError::WrongType)
    );
}

/// An increment on an expired key starts from zero and clears what was
/// left of it (the deadline included); a SET replaces the counter.
#[test]
fn an_expired_counter_starts_over_and_a_set_replaces_it() {
    let expiring = merged(
        &Entry::string(at(1, 1), Bytes::from_static(b"10")),
        &Entry::set_expiry(at(2, 1), Some(500)),
    );
    let (delta, value) = incr(Some(&expiring), 3, 4, at(3, 3), 1_000).unwrap();
    assert_eq!(value, 4);
    let counted = merged(&expiring, &delta);
    assert_eq!(counted.deadline(), None);
    assert_eq!(
        counted.string_value(1_000),
        Ok(Some(Bytes::from_static(b"4")))
    );
    let set = Entry::set_string(at(4, 1), Bytes::from_static(b"1"), None);
    assert_eq!(merged(&counted, &set), set);
}

/// Removed elements' markers go once older than the grace period; what is
/// present stays, and a cell purged in place equals one made from the
/// purged state (so replicas agree on its version and digest).
#[test]
fn old_removal_markers_are_purged_and_nothing_present_goes() {
    let mut r = Rich::default();
    for (name, ts, value) in [("a", 5, true), ("b", 3, false), ("c", 7, false)] {
        r.members.insert(
            Bytes::from_static(name.as_bytes()),
            Lww {
                version: at(ts, 1),
                value,
            },
        );
    }
    let mut e = Entry::rich(r.clone());
    assert_eq!(e.version(), at(7, 1));
    let mut cell = Cell::new(b"k", &r);
    assert!(e.purge_removed(crate::clock::Timestamp(4)));
    assert!(cell.purge_removed(crate::clock::Timestamp(4)));
    assert_eq!(e.set_members_present(), [Bytes::from_static(b"a")]);
    assert_eq!(e.version(), at(7, 1), "c's marker is newer: kept");
    assert!(e.purge_removed(crate::clock::Timestamp(100)));
    assert!(cell.purge_removed(crate::clock::Timestamp(100)));
    assert_eq!(e.version(), at(5, 1), "the newest remaining piece");
    let fresh = Cell::new(b"k", &e.to_rich());
    assert_eq!(
        (cell.version(), cell.digest()),
        (fresh.version(), fresh.digest())
    );
    assert!(
        !e.purge_removed(crate::clock::Timestamp(100)),
        "nothing left to purge"
    );
}

/// A SET that a counter's owner had not seen (made on the other side of a
/// partition) discards exactly the increments made before it, though the
/// owner went on adding to the same share after it; in any order of the
/// deltas. Beyond what a share remembers, the increments before the SET
/// count (never those after it are lost).
#[test]
fn a_set_the_owner_had_not_seen_discards_exactly_the_increments_before_it() {
    let b = Bytes::from_static;
    let start = Entry::string(at(1, 1), b(b"10"));
    let mut left = start.clone();
    let mut deltas = Vec::new();
    for (ts, by) in [(2, 5), (4, 5), (5, 1)] {
        let (d, _) = incr(Some(&left), 7, by, at(ts, 7), 0).unwrap();
        left.merge_in(&d);
        deltas.push(d);
    }
    assert_eq!(
        left.string_value(0),
        Ok(Some(b(b"21"))),
        "the owner's own view"
    );
    let set = Entry::set_string(at(3, 9), b(b"0"), None);
    let healed = merged(&left, &set);
    assert_eq!(
        healed.string_value(0),
        Ok(Some(b(b"6"))),
        "0, then +5 and +1"
    );
    let replayed = [&deltas[2], &set, &deltas[0], &deltas[1]]
        .into_iter()
        .fold(start.clone(), |e, d| merged(&e, d));
    assert_eq!(replayed, healed);
    // The owner, once it has seen the SET, goes on from what is left.
    let (d, value) = incr(Some(&healed), 7, 2, at(6, 7), 0).unwrap();
    assert_eq!(value, 8);
    assert_eq!(merged(&healed, &d).string_value(0), Ok(Some(b(b"8"))));

    // More increments before the SET than a share remembers: the oldest
    // are folded into the share's start, and a SET older than every mark
    // keeps the share whole.
    let mut long = start;
    for ts in 10..(12 + MARKS as u64) {
        let (d, _) = incr(Some(&long), 7, 1, at(ts, 7), 0).unwrap();
        long.merge_in(&d);
    }
    let early = Entry::set_string(at(10, 9), b(b"0"), None);
    let n = (2 + MARKS) as i64;
    assert_eq!(
        merged(&long, &early).string_value(0),
        Ok(Some(Bytes::from(n.to_string()))),
        "the first increment's mark was dropped: the whole share counts"
    );
    let late = Entry::set_string(at(10 + MARKS as u64, 9), b(b"0"), None);
    assert_eq!(
        merged(&long, &late).string_value(0),
        Ok(Some(b(b"1"))),
        "exact"
    );
}

/// A share remembers at most `MARKS` earlier increments, and only those
/// within `MARK_WINDOW_MICROS` of its latest.
#[test]
fn a_share_forgets_increments_older_than_its_window() {
    let v = |secs: u64| Version {
        ts: Timestamp::from_micros(secs * 1_000_000),
        node: 7,
    };
    let s = Shard::first(1, v(0)).then(2, v(30)).then(3, v(80));
    assert_eq!(
        s.marks,
        vec![(v(30), 2)],
        "the first is 80 s old: forgotten"
    );
    assert_eq!(s.since, v(0));
    let mut many = Shard::first(0, v(1));
    for i in 2..30 {
        many = many.then(i as i64, v(i));
    }
    assert_eq!(many.marks.len(), MARKS);
    assert_eq!(many.marks[0], (v(29 - MARKS as u64), 29 - MARKS as i64));
}
