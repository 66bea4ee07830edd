//! Streaming a backup of this node's live set (see [`crate::backup`] for
//! the layout and why it is consistent while the node serves).
//!
//! A blocking task reads the store one ring slice at a time, encodes the
//! slice's entries as snapshot frames into memory (the slice's read lock
//! is held only for that), and hands chunks to the admin connection
//! through a bounded channel, so a slow reader slows the backup and never
//! the writes. The manifest, with the count, size and SHA-256 of what was
//! sent, ends the stream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::shared::{record_of, Shared};
use crate::backup::{Manifest, BACKUP_FORMAT};
use crate::placement::{NodeRecord, RECORD_PREFIX};

/// Bytes gathered before a chunk goes to the connection.
const CHUNK: usize = 256 * 1024;
/// Chunks waiting for the connection at most.
const QUEUED: usize = 8;

/// One piece of a backup stream.
pub type Chunk = std::io::Result<Bytes>;

impl Shared {
    /// Starts a backup; its bytes come out of the returned channel. An
    /// error ends the stream early, without the trailer, which is how the
    /// client tells it was cut short.
    pub fn backup_stream(self: &Arc<Self>) -> mpsc::Receiver<Chunk> {
        let (tx, rx) = mpsc::channel(QUEUED);
        let manifest = self.backup_manifest();
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.stream_live_set(manifest, tx));
        rx
    }

    /// The manifest's fields known before the store is read.
    fn backup_manifest(&self) -> Manifest {
        let meta = self.metadata();
        let mut cluster = BTreeMap::new();
        for (name, reg) in meta.entries() {
            if let (Some(node), Some(rec)) = (
                name.strip_prefix(RECORD_PREFIX),
                NodeRecord::decode(&reg.value),
            ) {
                cluster.insert(node.to_string(), format!("{:016x}", rec.data_id));
            }
        }
        cluster.insert(self.me.to_string(), format!("{:016x}", self.data_id));
        let metadata = match meta.to_file_bytes() {
            Ok(b) => hex::encode(b),
            Err(e) => {
                // Encoding an in-memory record cannot fail short of a bug;
                // the manifest then carries none and restore refuses it.
                warn!(error = %e, "cannot encode the metadata record for a backup");
                String::new()
            }
        };
        Manifest {
            backup_format: BACKUP_FORMAT,
            release: env!("CARGO_PKG_VERSION").to_string(),
            log_format: crate::log::FORMAT_VERSION,
            node: self.me.to_string(),
            data_id: format!("{:016x}", self.data_id),
            tokens: self.placement.tokens,
            replication: self.placement.replication,
            generation: self.generation,
            incarnation: format!("{:016x}", self.incarnation),
            started_ms: crate::clock::wall_micros() / 1000,
            finished_ms: 0,
            tombstone_grace_secs: self.cfg.tombstone_grace_secs,
            cluster,
            metadata,
            metadata_entries: meta.entries().map(|(n, _)| n.clone()).collect(),
            records: 0,
            bytes: 0,
            sha256: String::new(),
        }
    }

    /// Reads the store into `tx` (on a blocking thread), then the trailer,
    /// and logs how it ended.
    fn stream_live_set(&self, manifest: Manifest, tx: mpsc::Sender<Chunk>) {
        let began = Instant::now();
        match self.send_live_set(manifest, &tx) {
            Ok(m) => info!(
                records = m.records,
                bytes = m.bytes,
                elapsed_ms = began.elapsed().as_millis() as u64,
                "streamed a backup"
            ),
            Err(Stop::Gone) => warn!("backup stopped: the client went away"),
            Err(Stop::Failed(e)) => {
                warn!(error = %e, "backup stopped");
                // Ends the stream without its trailer. If this send fails
                // too, the client is gone and there is no one to tell.
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    }

    /// The stream itself; returns the manifest it ended with.
    fn send_live_set(
        &self,
        mut manifest: Manifest,
        tx: &mpsc::Sender<Chunk>,
    ) -> Result<Manifest, Stop> {
        let mut hasher = Sha256::new();
        let mut buf = BytesMut::with_capacity(2 * CHUNK);
        buf.extend_from_slice(&crate::log::snapshot_header(1));
        let (mut records, mut bytes) = (0u64, 0u64);
        let mut send = |buf: &mut BytesMut| {
            let chunk = buf.split().freeze();
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
            tx.blocking_send(Ok(chunk)).map_err(|_| Stop::Gone)
        };
        for leaf in 0..crate::store::LEAVES {
            let mut failed = None;
            self.store
                .for_each_in_leaf_copying_large(leaf, |key, entry| {
                    if failed.is_none() {
                        match crate::log::encode_frame(&record_of(key, entry), &mut buf) {
                            Ok(()) => records += 1,
                            Err(e) => failed = Some(e),
                        }
                    }
                });
            if let Some(e) = failed {
                return Err(Stop::Failed(e));
            }
            if buf.len() >= CHUNK {
                send(&mut buf)?;
            }
        }
        if !buf.is_empty() {
            send(&mut buf)?;
        }
        manifest.finished_ms = crate::clock::wall_micros() / 1000;
        manifest.records = records;
        manifest.bytes = bytes;
        manifest.sha256 = hex::encode(hasher.finalize());
        let trailer = manifest.trailer().map_err(Stop::Failed)?;
        tx.blocking_send(Ok(Bytes::from(trailer)))
            .map_err(|_| Stop::Gone)?;
        Ok(manifest)
    }
}

/// Why a backup stream ended early.
enum Stop {
    /// The client closed the connection.
    Gone,
    /// An entry or the manifest could not be encoded.
    Failed(crate::error::Error),
}
