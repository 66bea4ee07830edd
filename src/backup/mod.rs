//! Backups of one node, and what restoring one checks.
//!
//! **What a backup is.** `POST /backup` on a node's admin port streams the
//! node's live set (every value, and every tombstone still within its grace
//! period) as one snapshot file of the commit log, the very file a
//! compaction writes, followed by a [`Manifest`] in a trailer (see
//! [`split_trailer`]). `ringkv backup` keeps the file as `data.snap` and
//! the manifest as `manifest.json`. Restoring is placing that file in an
//! empty data dir's `log/` with the node's placement, generation and
//! metadata record beside it ([`restore`]); the node replays it at start
//! as it would any snapshot.
//!
//! **Why it is consistent while the node serves.** The store applies a
//! write to its map before the write is appended and acknowledged, so
//! every write this node acknowledged before the backup began is in the
//! map when the stream starts reading it, and is in the file. Writes that
//! land while the stream runs may or may not be; each is a whole version
//! that last-writer-wins merges with whatever else the node learns, so a
//! file holding some of them is as good as one holding none. Reading the
//! map takes one ring slice at a time, so writes to other slices never
//! wait, and a slice's lock is held while it is encoded into memory, never
//! while bytes go over the network.
//!
//! **Why a restored node cannot count twice.** Counter shares belong to an
//! incarnation of a data dir (`node/incarnation.rs`). A restore never
//! writes one, so the node draws a new one at start: its old share, as the
//! backup had it, is kept and never written again, and the newer copies of
//! that share on the other replicas win the merge.
//!
//! **Why a restore into a running cluster overwrites nothing newer.** The
//! restored data is merged last-writer-wins like any replica's: a version
//! newer on another node wins over the backup's, and a delete is a
//! tombstone that wins over the older value. A tombstone is purged after
//! `tombstone_grace_secs`, so a backup older than that could bring a
//! deleted key back into a cluster that forgot the delete: restoring into a
//! running cluster refuses it (see [`check_age`]). A whole cluster restored
//! from backups of about the same time has no such newer deletes.

pub mod restore;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The version of the backup layout (the stream, `data.snap` and
/// `manifest.json`). A restore refuses a backup of a newer layout.
pub const BACKUP_FORMAT: u32 = 1;

/// The last 16 bytes of a backup stream: the manifest's length (8 bytes,
/// little-endian) and this marker. A stream that ends any other way was
/// cut short.
pub const TRAILER_MAGIC: &[u8; 8] = b"RKVBKUP1";

/// The snapshot file's name in a backup directory.
pub const DATA_FILE: &str = "data.snap";
/// The manifest's name in a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What a backup holds, and where and when it was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`BACKUP_FORMAT`] of the release that took it.
    pub backup_format: u32,
    /// The release that took it (`ringkv --version`).
    pub release: String,
    /// The commit-log format of its records.
    pub log_format: u16,
    /// The node it was taken from.
    pub node: String,
    /// That node's data directory identity (the `placement` file's id), in
    /// hex.
    pub data_id: String,
    /// The node's tokens on the ring.
    pub tokens: usize,
    /// The cluster's replication factor N.
    pub replication: usize,
    /// The node's generation when the backup was taken.
    pub generation: u64,
    /// The incarnation whose counter shares the backup holds, in hex (the
    /// restored node takes a new one).
    pub incarnation: String,
    /// When the stream began reading the store, in ms since the epoch.
    pub started_ms: u64,
    /// When it finished.
    pub finished_ms: u64,
    /// The node's `tombstone_grace_secs`: deletes older than that may have
    /// been purged.
    pub tombstone_grace_secs: u64,
    /// Every node of the cluster as the backup knew it, and its data
    /// directory identity in hex: what tells one cluster from another.
    pub cluster: BTreeMap<String, String>,
    /// The cluster-wide metadata record, as the node's `metadata` file
    /// holds it, in hex.
    pub metadata: String,
    /// Names of the metadata record's entries (for people reading this).
    pub metadata_entries: Vec<String>,
    /// Records in `data.snap`.
    pub records: u64,
    /// Size of `data.snap`.
    pub bytes: u64,
    /// SHA-256 of `data.snap`, in hex.
    pub sha256: String,
}

impl Manifest {
    /// The trailer that ends a backup stream: the manifest as JSON, its
    /// length, [`TRAILER_MAGIC`].
    pub fn trailer(&self) -> Result<Vec<u8>> {
        let mut out = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::InvalidInput(format!("manifest: {e}")))?;
        let len = out.len() as u64;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(TRAILER_MAGIC);
        Ok(out)
    }

    /// Reads `manifest.json`'s text.
    pub fn from_json(text: &str) -> Result<Manifest> {
        serde_json::from_str(text)
            .map_err(|e| Error::InvalidInput(format!("not a ringkv backup manifest: {e}")))
    }

    /// Whether this release can restore the backup: its layout and log
    /// format must be ones this release reads.
    pub fn check_readable(&self) -> Result<()> {
        let (min, max) = (crate::log::MIN_FORMAT_VERSION, crate::log::FORMAT_VERSION);
        if self.backup_format > BACKUP_FORMAT {
            return Err(Error::InvalidInput(format!(
                "this backup was taken by ringkv {} in backup format {}; ringkv {} reads backup format {BACKUP_FORMAT} and older: restore it with ringkv {} or newer",
                self.release,
                self.backup_format,
                env!("CARGO_PKG_VERSION"),
                self.release
            )));
        }
        if !(min..=max).contains(&self.log_format) {
            return Err(Error::InvalidInput(format!(
                "this backup was taken by ringkv {} with commit-log format {}; ringkv {} reads formats {min} to {max}: restore it with ringkv {} or newer",
                self.release,
                self.log_format,
                env!("CARGO_PKG_VERSION"),
                self.release
            )));
        }
        Ok(())
    }
}

/// Splits a whole backup stream's tail: returns the manifest and the
/// length of the snapshot file before it. `tail` is the stream's last
/// bytes (at least the trailer) and `total` the stream's length.
pub fn split_trailer(tail: &[u8], total: u64) -> Result<(Manifest, u64)> {
    let cut = || {
        Error::InvalidInput(
            "the backup stream ended before its manifest: the node stopped or the connection broke; nothing usable was written".into(),
        )
    };
    if tail.len() < 16 || &tail[tail.len() - 8..] != TRAILER_MAGIC {
        return Err(cut());
    }
    let len_at = tail.len() - 16;
    let len = u64::from_le_bytes(tail[len_at..len_at + 8].try_into().expect("8 bytes"));
    if len > len_at as u64 || len + 16 > total {
        return Err(cut());
    }
    let json = &tail[len_at - len as usize..len_at];
    let manifest = Manifest::from_json(&String::from_utf8_lossy(json))?;
    Ok((manifest, total - 16 - len))
}

/// Whether two clusters are the same: they share a node with the same data
/// directory identity. Two clusters made apart draw their identities at
/// random, so they share none even when their node names are the same.
pub fn same_cluster(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.iter().any(|(name, id)| b.get(name) == Some(id))
}

/// Refuses a backup older than its tombstone grace period, for a restore
/// into a cluster that runs on: that cluster may have purged deletes made
/// after the backup, and the backup's older values would come back.
pub fn check_age(m: &Manifest, now_ms: u64) -> Result<()> {
    let age_ms = now_ms.saturating_sub(m.started_ms);
    let grace_ms = m.tombstone_grace_secs.saturating_mul(1000);
    if age_ms > grace_ms {
        return Err(Error::InvalidInput(format!(
            "this backup is {} s old, older than tombstone_grace_secs ({} s): the running cluster may have purged deletes made since, and restoring it there could bring deleted keys back. Restore a newer backup, or restore every node of the cluster from backups of the same time",
            age_ms / 1000,
            m.tombstone_grace_secs
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
