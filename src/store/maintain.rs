//! What happens to stored entries besides merges: tombstone purges,
//! FLUSHALL's marker and sweep, and removals after a hand-off.

use std::sync::atomic::Ordering;

use super::{cell_ref, Store, Tables};
use crate::clock::Timestamp;
use crate::ring::Token;
use crate::store::{NodeId, Version};
use crate::values::Rich;

impl Store {
    /// The greatest version a FLUSHALL marker removes, if there is one.
    pub fn flush_marker(&self) -> Option<Version> {
        match self.flushed.load(Ordering::Relaxed) {
            0 => None,
            next => Some(Version {
                ts: Timestamp(next - 1),
                node: NodeId::MAX,
            }),
        }
    }

    /// Whether a version is dead by the FLUSHALL marker: stamped at or
    /// before it. On a tie the flush wins (a delete beats a write of the
    /// same instant), so every node judges an entry alike.
    pub fn is_dead(&self, version: Version) -> bool {
        version.ts.0 < self.flushed.load(Ordering::Relaxed)
    }

    /// Makes every version stamped at or before `marker` dead at once: it
    /// reads as absent, is never merged in again, and is left out of
    /// iteration (so out of snapshots and anti-entropy). Its memory is
    /// reclaimed by [`Store::sweep_flushed`]. The marker only moves
    /// forward; returns whether it moved.
    pub fn flush_before(&self, marker: Timestamp) -> bool {
        let next = marker.0.saturating_add(1);
        self.flushed.fetch_max(next, Ordering::AcqRel) < next
    }

    /// Removes the entries [`Store::flush_before`] made dead, and the
    /// pieces it made dead in rich states that have newer ones, one bucket
    /// at a time (writers to the others go on). Returns how many entries
    /// went.
    pub fn sweep_flushed(&self) -> usize {
        let started = self.flushed.load(Ordering::Acquire);
        let Some(marker) = self.flush_marker() else {
            return 0;
        };
        let mut swept = 0;
        for bucket in self.buckets.iter() {
            let mut tables = bucket.write();
            let Tables { simple, rich } = &mut *tables;
            simple.retain(|p| {
                let (key, e) = p.split();
                let dead = self.is_dead(e.version);
                if dead {
                    self.forget(bucket, &Token::of(key), key, e);
                    swept += 1;
                }
                !dead
            });
            rich.retain(|c| {
                let pos = Token::of(c.key());
                if self.is_dead(c.version()) {
                    self.forget(bucket, &pos, c.key(), cell_ref(c));
                    swept += 1;
                    return false;
                }
                let was_live = !c.is_tombstone();
                self.unaccount(bucket, &pos, c.key(), cell_ref(c));
                c.merge(&Rich {
                    cleared: marker,
                    ..Rich::default()
                });
                self.account(bucket, &pos, c.key(), cell_ref(c));
                self.count_transition(was_live, !c.is_tombstone());
                true
            });
        }
        self.swept.fetch_max(started, Ordering::AcqRel);
        swept
    }

    /// Removes `key` if it still holds exactly `version` (used after its
    /// copy was handed to the nodes that should hold it). Returns whether it
    /// was removed.
    pub fn remove_if_version(&self, key: &[u8], version: Version) -> bool {
        let pos = Token::of(key);
        let bucket = self.bucket_at(&pos, key);
        let hash = self.hash(key);
        let mut tables = bucket.write();
        if let Ok(slot) = tables.simple.find_entry(hash, |p| p.key() == key) {
            if slot.get().view().version != version {
                return false;
            }
            let (gone, _) = slot.remove();
            self.forget(bucket, &pos, key, gone.view());
            return true;
        }
        match tables.rich.find_entry(hash, |c| c.key() == key) {
            Ok(slot) if slot.get().version() == version => {
                let (gone, _) = slot.remove();
                self.forget(bucket, &pos, key, cell_ref(&gone));
                true
            }
            _ => false,
        }
    }

    /// Purges tombstones (and rich states with nothing live left) written
    /// before `before`. Returns how many went.
    pub fn purge_tombstones(&self, before: Timestamp) -> usize {
        let mut purged = 0;
        for bucket in self.buckets.iter() {
            let mut tables = bucket.write();
            let Tables { simple, rich } = &mut *tables;
            simple.retain(|p| {
                let (key, e) = p.split();
                let purge = e.is_tombstone() && e.version.ts < before;
                if purge {
                    self.forget(bucket, &Token::of(key), key, e);
                    purged += 1;
                }
                !purge
            });
            rich.retain(|c| {
                let purge = c.is_tombstone() && c.version().ts < before;
                if purge {
                    self.forget(bucket, &Token::of(c.key()), c.key(), cell_ref(c));
                    purged += 1;
                }
                !purge
            });
            // Live hashes and sets shed the markers of elements removed
            // before the grace period (they may pack back to a string).
            let stale: Vec<Box<[u8]>> = rich
                .iter()
                .filter(|c| c.has_removed_before(before))
                .map(|c| c.key().into())
                .collect();
            for key in stale {
                self.purge_removed_in(bucket, &mut tables, &key, before);
            }
        }
        purged
    }
}
