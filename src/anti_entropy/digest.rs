//! The pure half of anti-entropy: ranges, digests, and the comparison steps.
//!
//! Two replicas reconcile the keys they *share*: the ring arcs whose
//! preference lists hold both of them ([`shared_ranges`]). Digests come from
//! the store's leaf buckets (each a contiguous slice of the ring, with an
//! incrementally maintained XOR of entry hashes). A leaf that lies wholly
//! inside the ranges uses its stored digest; a leaf cut by a range boundary
//! (at most two per range) is digested by scanning its few entries. Leaves
//! are grouped [`GROUP_LEAVES`] to a group, so the comparison goes top-down:
//!
//! 0. the initiator sends one digest of it all ([`root_digest`]) and a
//!    fingerprint of the ranges; if the other side works out the same
//!    ranges and digest, the round is over (protocol 10 and later);
//! 1. the initiator sends one digest per group ([`group_digests`]);
//! 2. the other side answers with its leaf digests for the groups that
//!    differ ([`leaves_of_differing_groups`]);
//! 3. the initiator finds the differing leaves ([`differing_leaves`]) and
//!    sends (key, version) for its entries in them ([`summaries`]);
//! 4. the other side answers with its newer entries and the keys it wants
//!    ([`exchange`]); the initiator merges the former and sends the latter.
//!
//! From protocol 12, a large rich key (a hash or set of
//! `anti_entropy_sections_min_bytes` or more) that differs is not sent
//! whole in step 4: the answerer asks for it with [`sections_mark`], and
//! the two compare it by sections ([`answer_sections`],
//! [`crate::values::sections`]), each sending the other only the pieces
//! that differ.
//!
//! The bytes moved are proportional to the number of differing leaves, not
//! to the data held. Every function here is a plain computation over a
//! [`Store`]: the network driver is in `mod.rs`, and the property tests run
//! the same steps between in-memory stores.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ring::{NodeName, Ring, Token};
use crate::store::{entry_hash, leaf_of, Entry, Store};
use crate::values::{sections, Body, Summary, Version};

/// What an answerer (protocol 12 and later) pushes in step 4 for a key it
/// holds as a large rich state that differs from the initiator's: a
/// tombstone at version zero, which says "compare this key by sections"
/// ([`PeerMsg::AeSections`](crate::message::PeerMsg::AeSections)), and
/// which, were it merged, would change nothing (it loses to every write).
pub fn sections_mark() -> Entry {
    Entry::tombstone(Version::ZERO)
}

/// Whether a pushed entry is [`sections_mark`].
pub fn is_sections_mark(e: &Entry) -> bool {
    e.is_tombstone() && e.version() == Version::ZERO
}

/// Leaves per group (the middle level of the digest tree).
pub const GROUP_LEAVES: usize = 32;

/// A set of ring intervals, each (start exclusive, end inclusive), sorted
/// and disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranges(pub Vec<(Token, Token)>);

impl Ranges {
    /// Whether position `t` lies in one of the intervals.
    pub fn contains(&self, t: &Token) -> bool {
        let i = self.0.partition_point(|(_, end)| end < t);
        self.0.get(i).is_some_and(|(start, _)| start < t)
    }

    /// A fingerprint of the intervals (the first 8 bytes of their SHA-1),
    /// by which two sides that worked them out apart check they agree.
    pub fn fingerprint(&self) -> Digest {
        use sha1::{Digest as _, Sha1};
        let mut h = Sha1::new();
        for (start, end) in &self.0 {
            h.update(start.0);
            h.update(end.0);
        }
        let mut out = [0; 8];
        out.copy_from_slice(&h.finalize()[..8]);
        out
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every leaf the intervals touch, with whether it lies wholly inside
    /// them (`true`) or is cut by a boundary (`false`), sorted by leaf.
    pub fn leaves(&self) -> Vec<(usize, bool)> {
        let mut out: Vec<(usize, bool)> = Vec::new();
        for (start, end) in &self.0 {
            let (first, last) = (leaf_of(start), leaf_of(end));
            for leaf in first..=last {
                // Interior leaves are whole; the two end leaves are cut
                // unless the interval reaches the ring's very ends.
                let whole =
                    (leaf > first || *start == Token::MIN) && (leaf < last || *end == Token::MAX);
                match out.last_mut() {
                    Some((l, w)) if *l == leaf => *w &= whole,
                    _ => out.push((leaf, whole)),
                }
            }
        }
        out
    }
}

/// The ranges whose preference lists (over `ring`, `n` replicas) hold both
/// `a` and `b`, adjacent arcs merged.
pub fn shared_ranges(ring: &Ring, a: &str, b: &str, n: usize) -> Ranges {
    owned_ranges(ring, n, |pref| {
        pref.iter().any(|x| &**x == a) && pref.iter().any(|x| &**x == b)
    })
}

/// The ranges whose preference lists hold `a`.
pub fn ranges_of(ring: &Ring, a: &str, n: usize) -> Ranges {
    owned_ranges(ring, n, |pref| pref.iter().any(|x| &**x == a))
}

fn owned_ranges(ring: &Ring, n: usize, keep: impl Fn(&[NodeName]) -> bool) -> Ranges {
    let mut out: Vec<(Token, Token)> = Vec::new();
    let mut arcs: Vec<(Token, Token)> = ring
        .arcs(n)
        .into_iter()
        .filter(|(_, _, pref)| keep(pref))
        .map(|(s, e, _)| (s, e))
        .collect();
    arcs.sort();
    for (s, e) in arcs {
        match out.last_mut() {
            Some((_, end)) if *end == s => *end = e,
            _ => out.push((s, e)),
        }
    }
    Ranges(out)
}

/// Digest of `leaf` restricted to `ranges`.
fn leaf_digest(store: &Store, leaf: usize, whole: bool, ranges: &Ranges) -> u64 {
    if whole {
        return store.leaf_digest(leaf);
    }
    let mut d = 0;
    store.for_each_in_leaf(leaf, |k, e| {
        let pos = Token::of(k);
        if ranges.contains(&pos) {
            d ^= entry_hash(&pos, e);
        }
    });
    d
}

/// A digest on the wire: 8 bytes, no length or varint overhead.
pub type Digest = [u8; 8];

fn wire(d: u64) -> Digest {
    d.to_be_bytes()
}

/// The leaves the ranges touch, grouped: (group, [(leaf, whole)]), in order.
fn grouped(ranges: &Ranges) -> Vec<(u32, Vec<(usize, bool)>)> {
    let mut out: Vec<(u32, Vec<(usize, bool)>)> = Vec::new();
    for (leaf, whole) in ranges.leaves() {
        let group = (leaf / GROUP_LEAVES) as u32;
        match out.last_mut() {
            Some((g, leaves)) if *g == group => leaves.push((leaf, whole)),
            _ => out.push((group, vec![(leaf, whole)])),
        }
    }
    out
}

/// Step 1: one digest per group the ranges touch, in group order (both
/// sides derive the same group list from the same ranges).
pub fn group_digests(store: &Store, ranges: &Ranges) -> Vec<Digest> {
    grouped(ranges)
        .iter()
        .map(|(_, leaves)| {
            wire(
                leaves
                    .iter()
                    .fold(0, |acc, &(l, w)| acc ^ leaf_digest(store, l, w, ranges)),
            )
        })
        .collect()
}

/// Step 0: one digest of everything in `ranges` (the XOR of the group
/// digests, as they are of the entries' hashes).
pub fn root_digest(store: &Store, ranges: &Ranges) -> Digest {
    wire(
        group_digests(store, ranges)
            .iter()
            .fold(0, |acc, d| acc ^ u64::from_be_bytes(*d)),
    )
}

/// Step 2: for every group whose digest differs from `theirs`, this side's
/// digests of the group's leaves (in leaf order).
pub fn leaves_of_differing_groups(
    store: &Store,
    ranges: &Ranges,
    theirs: &[Digest],
) -> Vec<(u32, Vec<Digest>)> {
    grouped(ranges)
        .into_iter()
        .enumerate()
        .filter_map(|(i, (group, leaves))| {
            let digests: Vec<Digest> = leaves
                .iter()
                .map(|&(l, w)| wire(leaf_digest(store, l, w, ranges)))
                .collect();
            let mine = digests
                .iter()
                .fold(0, |acc, d| acc ^ u64::from_be_bytes(*d));
            (theirs.get(i) != Some(&wire(mine))).then_some((group, digests))
        })
        .collect()
}

/// Step 3a: the leaves whose digests differ from `theirs`.
pub fn differing_leaves(store: &Store, ranges: &Ranges, theirs: &[(u32, Vec<Digest>)]) -> Vec<u32> {
    let groups = grouped(ranges);
    let mut out = Vec::new();
    for (group, digests) in theirs {
        let Some((_, leaves)) = groups.iter().find(|(g, _)| g == group) else {
            continue;
        };
        for (i, &(leaf, whole)) in leaves.iter().enumerate() {
            if digests.get(i) != Some(&wire(leaf_digest(store, leaf, whole, ranges))) {
                out.push(leaf as u32);
            }
        }
    }
    out
}

/// Step 3b: (key, summary) of every entry in `leaves` within `ranges`.
pub fn summaries(store: &Store, ranges: &Ranges, leaves: &[u32]) -> Vec<(Bytes, Summary)> {
    let mut out = Vec::new();
    for &leaf in leaves {
        store.for_each_in_leaf(leaf as usize, |k, e| {
            if ranges.contains(&Token::of(k)) {
                out.push((Bytes::copy_from_slice(k), e.summary()));
            }
        });
    }
    out
}

/// Step 4: given the other side's summaries of `leaves`, the entries this
/// side holds newer (or alone) and the keys it should be sent. With
/// `by_sections` (the other side speaks protocol 12 or later: the
/// threshold), a rich state of that many bytes or more that differs from
/// the other side's rich state is not pushed: [`sections_mark`] is, and the
/// key is wanted, so that the initiator compares it by sections.
pub fn exchange(
    store: &Store,
    ranges: &Ranges,
    leaves: &[u32],
    theirs: &[(Bytes, Summary)],
    by_sections: Option<usize>,
) -> (Vec<(Bytes, Entry)>, Vec<Bytes>) {
    let their: std::collections::HashMap<&[u8], Summary> =
        theirs.iter().map(|(k, v)| (&k[..], *v)).collect();
    let mut want = Vec::new();
    let mut push = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for &leaf in leaves {
        store.for_each_in_leaf(leaf as usize, |k, e| {
            if !ranges.contains(&Token::of(k)) {
                return;
            }
            let k = Bytes::copy_from_slice(k);
            let (send, ask) = match their.get(&k[..]) {
                None => (true, false),
                Some(t) => Summary::reconcile(e.summary(), *t),
            };
            let large = |min: usize| matches!(e.body, Body::Rich(c) if c.mem_bytes() >= min);
            let sectioned = send
                && ask
                && by_sections.is_some_and(large)
                && their.get(&k[..]).is_some_and(|t| t.is_rich());
            if sectioned {
                push.push((k.clone(), sections_mark()));
            } else if send {
                push.push((k.clone(), e.to_entry()));
            }
            if ask {
                want.push(k.clone());
            }
            seen.insert(k);
        });
    }
    want.extend(
        theirs
            .iter()
            .filter(|(k, _)| !seen.contains(k))
            .map(|(k, _)| k.clone()),
    );
    (push, want)
}

/// Of the entries `offered` (key, summary), the positions of those this
/// store should be sent: absent here, or differing so that the offer
/// holds something this copy lacks (see [`Summary::reconcile`]).
pub fn wanted(store: &Store, offered: &[(Bytes, Summary)]) -> Vec<u32> {
    offered
        .iter()
        .enumerate()
        .filter(|(_, (key, theirs))| match store.get(key) {
            None => true,
            Some(mine) => Summary::reconcile(mine.summary(), *theirs).1,
        })
        .map(|(i, _)| i as u32)
        .collect()
}

/// The entries held for `keys` (those still held).
pub fn entries(store: &Store, keys: &[Bytes]) -> Vec<(Bytes, Entry)> {
    keys.iter()
        .filter_map(|k| store.get(k).map(|e| (k.clone(), e)))
        .collect()
}

/// What the initiator does with step 4's answer.
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries to merge.
    pub merge: Vec<(Bytes, Entry)>,
    /// Keys to send whole.
    pub whole: Vec<Bytes>,
    /// Keys to compare by sections.
    pub sectioned: Vec<Bytes>,
}

/// Splits step 4's answer: with a peer of protocol 12 or later
/// (`by_sections`), the keys the answerer marked ([`sections_mark`]) and
/// the wanted keys this side holds large (`large`) are compared by
/// sections; every other wanted key is sent whole.
pub fn plan(
    push: Vec<(Bytes, Entry)>,
    want: Vec<Bytes>,
    by_sections: bool,
    large: impl Fn(&Bytes) -> bool,
) -> Plan {
    let mut plan = Plan::default();
    for (k, e) in push {
        match by_sections && is_sections_mark(&e) {
            true => plan.sectioned.push(k),
            false => plan.merge.push((k, e)),
        }
    }
    for k in want {
        if plan.sectioned.contains(&k) {
            continue;
        }
        match by_sections && large(&k) {
            true => plan.sectioned.push(k),
            false => plan.whole.push(k),
        }
    }
    plan
}

/// The answer to [`PeerMsg::AeSections`](crate::message::PeerMsg::AeSections)
/// for `key`, given the initiator's section digests: this side's piece of
/// the differing sections and those sections (nothing, when none differ).
/// A side that holds no rich state for the key sends what it holds whole
/// and asks for every section.
pub fn answer_sections(store: &Store, key: &[u8], theirs: &[u64]) -> (Option<Entry>, Vec<u16>) {
    let pos = Token::of(key);
    // Digests and piece from one look at the state (one copy, if large).
    let answer = store.with_cell_at(&pos, key, |c| {
        let want = sections::differing(&sections::digests(c), theirs);
        let piece = match want.is_empty() {
            true => None,
            false => sections::piece(c, &want),
        };
        (piece, want)
    });
    match answer {
        Some((piece, want)) => (
            piece.and_then(|p| store.unflushed_entry(Entry::rich(p))),
            want,
        ),
        None => (
            store.get_at(&pos, key),
            (0..=sections::HEAD as u16).collect(),
        ),
    }
}
