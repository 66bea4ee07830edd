//! Typed writes (`Check::apply_to`) on what a replica holds.

use bytes::Bytes;

use super::tests::{lend, merged};
use super::*;

/// Check::apply_to on `current` as the store lends it, at `now_ms`.
fn checked(current: Option<&Entry>, check: &Check, delta: &Entry, now_ms: u64) -> Entry {
    lend(current, |lent| {
        check.apply_to(delta, lent, now_ms).expect("a set").0
    })
}

/// Found by the simulated cluster: replica B never saw SADD m0 (acked by
/// the others) and holds only SREM m1's removal, so the key reads absent
/// there. A later SREM m2 through B must not clear, up to B's newest
/// removal, the m0 the others hold: after the merge, m0 is still there.
#[test]
fn a_removal_on_a_replica_whose_set_reads_empty_clears_nothing_added_elsewhere() {
    let at = |ts: u64, node: u64| Version {
        ts: Timestamp(ts),
        node,
    };
    let member = |m: &str| Bytes::from(m.to_string());
    let check = |m: &str| Check {
        kind: Kind::Set,
        names: [member(m)].into(),
    };
    let a = Entry::set_members(at(15, 3), &[member("m0")], true);
    let b = checked(
        None,
        &check("m1"),
        &Entry::set_members(at(21, 4), &[member("m1")], false),
        0,
    );
    let delta = Entry::set_members(at(25, 1), &[member("m2")], false);
    let b_after = merged(&b, &checked(Some(&b), &check("m2"), &delta, 0));
    assert_eq!(
        merged(&a, &b_after).set_members_present(),
        vec![member("m0")]
    );
    // An expired set (its deadline, 1 ms, passed at 10 ms) is still
    // started over: what it held stays dead.
    let mut expiring = Entry::set_members(at(15, 3), &[member("m0")], true).to_rich();
    expiring.ttl = Some(Lww {
        version: at(15, 3),
        value: Some(1),
    });
    let expired = Entry::rich(expiring);
    let add = Entry::set_members(at(30, 1), &[member("m9")], true);
    let restarted = merged(&expired, &checked(Some(&expired), &check("m9"), &add, 10));
    assert_eq!(restarted.set_members_present(), vec![member("m9")]);
}
