//! A large rich state compared and sent by sections, not whole.
//!
//! Anti-entropy compares two replicas' copies of a key by one summary (its
//! version and [`super::Cell::digest`]). For a string that is enough: the
//! newer copy goes whole. A hash of a million fields that differs by one
//! field would go whole too, both ways, and be merged under its bucket's
//! lock. Instead, two replicas of a large rich key split its fields and
//! members into [`SECTIONS`] sections by a stable hash of their names,
//! compare one digest per section (and one for the head), and send each
//! other only the sections that differ, as a piece of the state: the head
//! and those sections' elements ([`super::Cell::to_rich_where`]).
//!
//! A piece merges like any delta. A rich state's merge is a join over its
//! head and over each named element apart (`rich.rs`), and a piece is the
//! head and a subset of the elements, so merging a piece into a copy gives,
//! on the piece's names, what merging the whole would give, and changes no
//! other name (beyond what the head's clear removes, which the whole would
//! remove too). Sections whose digests agree hold the same elements, so
//! once each side has merged the other's differing sections, the two copies
//! are equal: the property test `sections_reconcile_as_whole_states` checks
//! exactly that against the merge of the whole states.
//!
//! Deliberately left out: a finer split for a section that still holds
//! many elements (a section of a hash of a million fields holds about
//! 4,000), and keeping section digests up to date on every write (they are
//! worked out when a round asks, which reads every element once).

use super::{Cell, Rich};
use crate::encoding::stable_hash;

/// Sections a large state is split into.
pub const SECTIONS: usize = 256;

/// The index of the head's digest in [`digests`]' answer, after the
/// sections'.
pub const HEAD: usize = SECTIONS;

const SECTION_SEED: u64 = 0x7365_6374_696f_6e73;

/// The section an element named `name` is in: the same on every node.
pub fn section_of(name: &[u8]) -> usize {
    (stable_hash(SECTION_SEED, name) >> 56) as usize
}

/// One digest per section (the XOR of its elements' digest contributions)
/// and the head's last: [`SECTIONS`] + 1 of them.
pub fn digests(cell: &Cell) -> Vec<u64> {
    let mut out = vec![0u64; SECTIONS + 1];
    out[HEAD] = cell.element_hashes(|name, h| out[section_of(name)] ^= h);
    out
}

/// The sections (and [`HEAD`]) where `mine` and `theirs` differ; all of
/// them when the two are not of the same shape (a peer's list is not
/// trusted to be).
pub fn differing(mine: &[u64], theirs: &[u64]) -> Vec<u16> {
    if mine.len() != theirs.len() {
        return (0..=HEAD as u16).collect();
    }
    (0..mine.len())
        .filter(|&i| mine[i] != theirs[i])
        .map(|i| i as u16)
        .collect()
}

/// The piece of `cell` that `wanted` names: its head and the elements of
/// the wanted sections; `None` when that holds nothing at all.
pub fn piece(cell: &Cell, wanted: &[u16]) -> Option<Rich> {
    let mut keep = [false; SECTIONS];
    for &s in wanted {
        if let Some(k) = keep.get_mut(usize::from(s)) {
            *k = true;
        }
    }
    let piece = cell.to_rich_where(|name| keep[section_of(name)]);
    (piece != Rich::default()).then_some(piece)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::tests::entry;
    use crate::values::Entry;
    use proptest::prelude::*;

    /// `base` merged with each of `deltas`.
    fn grown(base: &Entry, deltas: &[Entry]) -> Rich {
        let mut r = base.to_rich();
        for d in deltas {
            r.merge(&d.to_rich());
        }
        r
    }

    proptest! {
        #[test]
        fn sections_reconcile_as_whole_states(
            base in entry(),
            da in proptest::collection::vec(entry(), 0..4),
            db in proptest::collection::vec(entry(), 0..4),
        ) {
            // Two replicas that shared a state and then each merged other
            // writes: one round of sections (a's digests to b, b's
            // differing pieces back, then a's) leaves both equal to the
            // merge of the whole states.
            let (a, b) = (grown(&base, &da), grown(&base, &db));
            let mut whole = a.clone();
            whole.merge(&b);
            let (mut ca, mut cb) = (Cell::new(b"k", &a), Cell::new(b"k", &b));
            let wanted = differing(&digests(&cb), &digests(&ca));
            if let Some(p) = piece(&cb, &wanted) {
                ca.merge(&p);
            }
            if let Some(p) = piece(&ca, &wanted) {
                cb.merge(&p);
            }
            prop_assert_eq!(ca.to_rich(), whole.clone());
            prop_assert_eq!(cb.to_rich(), whole);
            prop_assert_eq!(digests(&ca), digests(&cb));
        }
    }

    /// A field set at `ts` by `node` to `value`.
    fn field(ts: u64, node: u64, value: &'static [u8]) -> crate::values::Field {
        crate::values::Field {
            value: Some(crate::values::Lww {
                version: crate::values::Version {
                    ts: crate::clock::Timestamp(ts),
                    node,
                },
                value: bytes::Bytes::from_static(value),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn equal_sections_are_not_sent_and_a_changed_field_sends_its_section_alone() {
        let mut a = Rich::default();
        for i in 0..2_000u64 {
            a.fields
                .insert(bytes::Bytes::from(format!("f{i}")), field(i + 1, 1, b"v"));
        }
        let (ca, mut cb) = (Cell::new(b"k", &a), Cell::new(b"k", &a));
        assert!(differing(&digests(&ca), &digests(&cb)).is_empty());
        let mut delta = Rich::default();
        delta
            .fields
            .insert(bytes::Bytes::from_static(b"f7"), field(10_000, 2, b"new"));
        cb.merge(&delta);
        let wanted = differing(&digests(&ca), &digests(&cb));
        assert_eq!(wanted, vec![section_of(b"f7") as u16]);
        let p = piece(&cb, &wanted).expect("a piece");
        // About 2,000 / 256 fields, not 2,000.
        assert!(p.fields.len() < 30, "{} fields sent", p.fields.len());
        assert_eq!(p.fields.get(&b"f7"[..]), Some(&field(10_000, 2, b"new")));
        // A list of the wrong length asks for everything.
        assert_eq!(differing(&digests(&ca), &[1, 2]).len(), SECTIONS + 1);
    }
}
