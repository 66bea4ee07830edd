//! The node's copy of the cluster-wide metadata record (see
//! [`crate::metadata`]): merging what peers send, keeping it on disk,
//! applying its effects, and FLUSHALL.
//!
//! A record is merged in memory first, so its effects hold at once (a
//! flushed key reads as absent from that moment), then written to disk;
//! a peer that pushed it is acknowledged only after that write. Entries
//! are accepted only if their timestamps pass the clock's skew check, so a
//! node with a clock far ahead cannot flush the writes of the next hour.
//!
//! **FLUSHALL** stamps a marker with this node's clock, applies it and
//! makes it durable here, then pushes the record to every node it sees up
//! and waits, up to the request timeout, until each has merged it and
//! written it to disk. It answers OK when all have; otherwise an
//! `-UNAVAILABLE` error naming how many did (the flush has happened on
//! those, and reaches the rest through heartbeats). A node that was down
//! learns the marker when it is next reached, from the heartbeat digests
//! or the pushes on its new links, before it takes part in reads that
//! could show what was flushed. Memory of flushed entries is reclaimed in
//! the background.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::message::PeerMsg;
use crate::metadata::{Metadata, FLUSHALL};
use crate::node::shared::Shared;
use crate::store::Version;
use crate::transport::Peer;

impl Shared {
    /// A version stamped now by this node: what a write to the record
    /// (FLUSHALL, a departure, an ACL user) carries.
    pub fn stamp(&self) -> Version {
        Version {
            ts: self.clock.now(),
            node: self.id,
        }
    }

    /// A copy of this node's record.
    pub fn metadata(&self) -> Metadata {
        self.meta.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The digest of this node's record, as heartbeats carry it.
    pub fn metadata_digest(&self) -> u64 {
        self.meta_digest.load(Ordering::Relaxed)
    }

    /// Merges `other` into this node's record, keeping only entries whose
    /// timestamps the clock accepts, and applies what changed. Returns
    /// whether anything did. Does not write the disk: see
    /// [`Shared::persist_metadata`].
    pub fn merge_metadata(&self, other: &Metadata) -> bool {
        let mut accepted = Metadata::default();
        for (name, reg) in other.entries() {
            match self.clock.observe(reg.version.ts) {
                Ok(()) => {
                    accepted.set(name, reg.version, reg.value.clone());
                }
                Err(e) => warn!(entry = %name, error = %e, "refused a metadata entry"),
            }
        }
        let (changed, flush) = {
            let mut meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
            let changed = meta.merge(&accepted);
            if changed {
                self.meta_digest.store(meta.digest(), Ordering::Relaxed);
            }
            (changed, meta.flush_marker())
        };
        if let Some(marker) = flush.filter(|_| changed) {
            self.apply_flush(marker);
        }
        if changed {
            self.apply_departures();
            self.apply_users();
        }
        changed
    }

    /// Rebuilds the ACL users from the record, and closes the connections
    /// of users it no longer has.
    pub fn apply_users(&self) {
        let gone = self
            .acl
            .rebuild(&self.meta.lock().unwrap_or_else(|p| p.into_inner()));
        for name in gone {
            let closed = self.clients.kill(None, |c| c.details().user == name);
            info!(user = %String::from_utf8_lossy(&name), closed, "ACL user deleted; its connections closed");
        }
    }

    /// Makes every version at or before `marker` dead now, and reclaims
    /// their memory in the background.
    pub fn apply_flush(&self, marker: Version) {
        self.clock.advance_past(marker.ts);
        if !self.store.flush_before(marker.ts) {
            return;
        }
        info!(marker = %marker.ts, by = marker.node, "applied a FLUSHALL marker");
        let shared = self.arc();
        tokio::task::spawn_blocking(move || {
            let started = crate::clock::instant();
            let swept = shared.store.sweep_flushed();
            info!(
                swept,
                elapsed_ms = crate::clock::since(started).as_millis() as u64,
                "reclaimed the entries a FLUSHALL removed"
            );
        });
    }

    /// Writes this node's record to `DATA_DIR/metadata` (atomically, on
    /// the blocking pool). Concurrent calls write in turn, each the record
    /// as it is when its turn comes, so the file never goes back.
    pub async fn persist_metadata(&self) -> Result<()> {
        let _turn = self.meta_persist.lock().await;
        let meta = self.metadata();
        let path = self.cfg.data_dir.join("metadata");
        tokio::task::spawn_blocking(move || meta.store(&path))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    /// A peer's record: merged, written to disk, and acknowledged (if the
    /// peer asked) once written.
    pub fn on_meta_push(&self, from: &Peer, id: u64, meta: &Metadata) {
        let changed = self.merge_metadata(meta);
        self.meta_synced
            .send_if_modified(|s| !std::mem::replace(s, true));
        if !changed && id == 0 {
            return;
        }
        let shared = self.arc();
        let reply_to = from.reply_to.clone();
        tokio::spawn(crate::clock::inherit(async move {
            if changed {
                if let Err(e) = shared.persist_metadata().await {
                    warn!(error = %e, "could not write the metadata record; not acknowledging it");
                    return;
                }
            }
            if id != 0 {
                shared.net.send(&reply_to, PeerMsg::MetaAck { id });
            }
        }));
    }

    /// Waits until this node's record is as new as some peer's, or until
    /// the failure timeout passes without any peer answering (see the
    /// module doc). A node without seeds or peers does not wait.
    pub async fn wait_for_metadata(&self) {
        if self.cfg.seeds.is_empty() {
            return;
        }
        let mut synced = self.meta_synced.subscribe();
        let limit = self.cfg.failure_timeout();
        let waited = tokio::time::timeout(limit, synced.wait_for(|s| *s))
            .await
            .map(|r| r.is_ok());
        match waited {
            Ok(_) => info!("metadata record in step with the cluster; serving clients"),
            Err(_) => warn!(
                waited_ms = limit.as_millis() as u64,
                "no peer answered; serving clients with this node's own metadata record (a FLUSHALL it missed applies once a peer is reached)"
            ),
        }
    }

    /// A peer's digest: if it differs from this node's, the peer is sent
    /// this node's record (it sends its own the same way, so both
    /// converge).
    pub fn on_meta_digest(&self, from: &Peer, digest: u64) {
        if digest == self.metadata_digest() {
            self.meta_synced
                .send_if_modified(|s| !std::mem::replace(s, true));
        } else {
            let meta = Box::new(self.metadata());
            self.net
                .send(&from.reply_to, PeerMsg::MetaPush { id: 0, meta });
        }
    }

    /// FLUSHALL / FLUSHDB: see the module doc.
    pub async fn flush_all(&self) -> Result<()> {
        self.check_all_speak_metadata()?;
        let marker = self.stamp();
        let (reached, of) = self.spread(FLUSHALL, marker, Bytes::new()).await?;
        info!(marker = %marker.ts, confirmed = reached, up = of, "FLUSHALL");
        if reached < of {
            return Err(Error::Partial {
                op: "flushall",
                reached,
                of,
            });
        }
        Ok(())
    }

    /// Sets the record's entry `name` to `value` at `version`, applies it,
    /// makes it durable here, then pushes the record to every node up and
    /// waits, up to the request timeout, until each has merged it and
    /// written it to disk. Returns (nodes that have it, this one
    /// included; nodes up).
    pub async fn spread(
        &self,
        name: &str,
        version: Version,
        value: Bytes,
    ) -> Result<(usize, usize)> {
        let meta = {
            let mut meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
            meta.set(name, version, value);
            self.meta_digest.store(meta.digest(), Ordering::Relaxed);
            meta.clone()
        };
        if name == FLUSHALL {
            self.apply_flush(version);
        }
        self.apply_departures();
        self.apply_users();
        self.persist_metadata().await?;
        let deadline = crate::clock::instant() + self.cfg.request_timeout();
        let (guard, replies) = self.pending.register();
        let view = self.view.load_full();
        let others: Vec<_> = view
            .ring
            .nodes()
            .iter()
            .filter(|n| **n != self.me)
            .cloned()
            .collect();
        for node in &others {
            let msg = PeerMsg::MetaPush {
                id: guard.id,
                meta: Box::new(meta.clone()),
            };
            self.send_to(&view, node, msg);
        }
        let mut acked = Vec::with_capacity(others.len());
        while acked.len() < others.len() {
            replies.wake_at(deadline);
            match replies.next().await {
                Some((from, PeerMsg::MetaAck { .. })) if !acked.contains(&from) => {
                    acked.push(from);
                }
                Some(_) => {}
                None if crate::clock::instant() >= deadline => break,
                None => {}
            }
        }
        Ok((acked.len() + 1, others.len() + 1))
    }
}

impl Shared {
    /// Refuses, naming the node, when a node up speaks a peer protocol
    /// older than the metadata record's (5, during a rolling upgrade): it
    /// could never learn a FLUSHALL, and would serve what was flushed.
    pub(crate) fn check_all_speak_metadata(&self) -> Result<()> {
        let view = self.view.load();
        for (name, addr) in view.addrs.iter().filter(|(n, _)| **n != self.me) {
            if let Some(version) = self.net.peer_version(addr).filter(|v| *v < META_SINCE) {
                return Err(Error::invalid(format!(
                    "FLUSHALL and ACL changes need every node up to speak peer protocol {META_SINCE} or later, and {name} speaks {version}: finish the upgrade first"
                )));
            }
        }
        Ok(())
    }
}

/// The peer protocol version that carries the metadata record.
const META_SINCE: u32 = 6;

/// The value of a flush marker as `RINGKV`-style tools show it.
pub fn describe_marker(meta: &Metadata) -> Option<String> {
    meta.flush_marker()
        .map(|v| format!("{} by {:016x}", v.ts, v.node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_described_with_its_time_and_writer() {
        let mut m = Metadata::default();
        assert_eq!(describe_marker(&m), None);
        let v = Version {
            ts: crate::clock::Timestamp::from_micros(5),
            node: 255,
        };
        m.set(FLUSHALL, v, Bytes::new());
        assert_eq!(
            describe_marker(&m).as_deref(),
            Some("5.0 by 00000000000000ff")
        );
    }
}
