//! The keys that will expire, by deadline: so that the memory of expired
//! keys is reclaimed without a client touching them.
//!
//! Reads never need this: an expired key reads as absent by the reading
//! node's clock (`values::view`). What remains is the memory: the
//! reclaimer ([`Store::reclaim_expired`], run by the node about once a
//! second) takes the keys whose deadline passed, by a cutoff the node sets
//! behind its clock by the clock tolerance (so no node whose clock is
//! within it can still see them live), and reduces each to a tombstone at
//! its newest version ([`Entry::reclaimed`]), which is purged after the
//! grace period like any delete.
//!
//! The index holds `(deadline, key)` pairs. A key's pair is replaced when
//! a merge changes its deadline; a pair left stale by another path (a
//! purge, a flush) is only skipped when it comes due, as the reclaimer
//! looks at the key itself before touching it.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::Store;
use crate::ring::Token;

/// `(deadline ms, key)` for every key with an expiry. The key is a boxed
/// slice, not `Bytes`: 16 bytes less in each of the set's slots, one per
/// expiring key.
#[derive(Debug, Default)]
pub(super) struct ExpiryIndex {
    due: Mutex<BTreeSet<(u64, Box<[u8]>)>>,
}

impl ExpiryIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(u64, Box<[u8]>)>> {
        // Every change leaves the set consistent: a poisoned lock is safe.
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `key`'s deadline went from `old` to `new`.
    pub(super) fn note(&self, key: &[u8], old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        let mut due = self.lock();
        if let Some(d) = old {
            due.remove(&(d, Box::from(key)));
        }
        if let Some(d) = new {
            due.insert((d, Box::from(key)));
        }
    }

    /// Takes out up to `max` keys whose deadline is at or before `cutoff`.
    fn take_due(&self, cutoff: u64, max: usize) -> Vec<Box<[u8]>> {
        let mut due = self.lock();
        let mut out = Vec::new();
        while out.len() < max {
            match due.first() {
                Some((d, _)) if *d <= cutoff => {
                    out.push(due.pop_first().expect("first exists").1);
                }
                _ => break,
            }
        }
        out
    }

    /// How many keys have a deadline.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Store {
    /// Reduces every key whose deadline is at or before `cutoff` (ms since
    /// the epoch) to a tombstone at its newest version, at most `max` of
    /// them per call. Returns how many keys came due (at most `max`: when
    /// it is `max`, more may be due) and how many of them were reduced.
    pub fn reclaim_expired(&self, cutoff: u64, max: usize) -> (usize, usize) {
        let mut reclaimed = 0;
        let due = self.expiry.take_due(cutoff, max);
        for key in &due {
            let pos = Token::of(key);
            let Some(entry) = self.get_at(&pos, key) else {
                continue;
            };
            if !entry.expired(cutoff) {
                continue;
            }
            if self.apply_at(&pos, key, &entry.reclaimed()).changed {
                reclaimed += 1;
            }
        }
        (due.len(), reclaimed)
    }

    /// How many keys have an expiry deadline (expired ones not yet
    /// reclaimed included).
    pub fn expiring(&self) -> usize {
        self.expiry.len()
    }
}
