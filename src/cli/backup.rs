//! `ringkv backup` and `ringkv restore` (see [`crate::backup`]).
//!
//! `backup` streams a node's live set from its admin port into a new
//! directory: `data.snap` first (as `data.snap.part` until the stream's
//! trailer has been read and the checksum matches), then `manifest.json`,
//! written last so a directory with a manifest holds a whole backup.
//!
//! `restore` checks the backup whole before it writes anything, and asks
//! the operator to say where the node goes: into a running cluster
//! (`--admin` of one of its nodes, which must be the backup's cluster and
//! must not have the node up) or as one node of a whole cluster restored
//! from backups (`--whole-cluster`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::backup::restore::{check_empty, hash_file, read_backup, restore as prepare};
use crate::backup::{check_age, same_cluster, split_trailer, DATA_FILE, MANIFEST_FILE};
use crate::cli::http;
use crate::error::{Error, Result};
use crate::membership::State as MemberState;

/// The longest wait for the next bytes of a backup stream.
const IDLE: Duration = Duration::from_secs(60);

/// `ringkv backup --admin HOST:PORT DIR`.
pub async fn backup(admin: &str, dir: &Path) -> Result<()> {
    check_empty(dir)?;
    tokio::fs::create_dir_all(dir).await?;
    let part = dir.join(format!("{DATA_FILE}.part"));
    let began = Instant::now();
    let result = fetch_into(admin, &part, &dir.join(DATA_FILE)).await;
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            if let Err(rm) = tokio::fs::remove_file(&part).await {
                if rm.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("cannot remove {}: {rm}", part.display());
                }
            }
            return Err(e);
        }
    };
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::InvalidInput(format!("manifest: {e}")))?;
    let path = dir.join(MANIFEST_FILE);
    let mut f = tokio::fs::File::create(&path).await?;
    f.write_all(json.as_bytes()).await?;
    f.write_all(b"\n").await?;
    f.sync_all().await?;
    std::fs::File::open(dir)?.sync_all()?;
    println!(
        "backed up {} (ringkv {}, generation {}): {} records, {} bytes in {:.1} s to {}",
        manifest.node,
        manifest.release,
        manifest.generation,
        manifest.records,
        manifest.bytes,
        began.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// Streams the backup into `part`, checks and cuts off its trailer, and
/// renames it to `done`. Returns the manifest.
async fn fetch_into(admin: &str, part: &Path, done: &Path) -> Result<crate::backup::Manifest> {
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(part)
        .await?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let total = http::download(admin, "/backup", &mut out, IDLE).await?;
    let mut file = out.into_inner();
    // The trailer: the last 16 bytes give the manifest's length.
    let tail_len = 16.min(total);
    file.seek(std::io::SeekFrom::Start(total - tail_len))
        .await?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail).await?;
    let json_len = if tail_len == 16 && tail[8..] == crate::backup::TRAILER_MAGIC[..] {
        u64::from_le_bytes(tail[..8].try_into().expect("8 bytes")).min(total - 16)
    } else {
        0
    };
    let start = total - tail_len - json_len;
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let mut tail = vec![0u8; (total - start) as usize];
    file.read_exact(&mut tail).await?;
    let (manifest, data_len) = split_trailer(&tail, total)?;
    file.set_len(data_len).await?;
    file.sync_all().await?;
    drop(file);
    let (bytes, sha256) = hash_file(part)?;
    if bytes != manifest.bytes || sha256 != manifest.sha256 {
        return Err(Error::InvalidInput(format!(
            "the backup stream does not match its manifest: {bytes} bytes with SHA-256 {sha256}, where the node sent {} bytes with SHA-256 {}",
            manifest.bytes, manifest.sha256
        )));
    }
    tokio::fs::rename(part, done).await?;
    Ok(manifest)
}

/// Where a restored node goes.
pub enum Target<'a> {
    /// A running cluster, reached through this admin address.
    Running(&'a str),
    /// A cluster every node of which is restored from backups.
    WholeCluster,
}

/// `ringkv restore DIR --data-dir D (--admin HOST:PORT | --whole-cluster)`.
pub async fn restore(dir: &Path, data_dir: &Path, into: Target<'_>) -> Result<()> {
    let m = read_backup(dir)?;
    check_empty(data_dir)?;
    if let Target::Running(admin) = into {
        let (status, _) = crate::cli::status::fetch(admin).await?;
        let theirs: BTreeMap<String, String> = status
            .nodes
            .iter()
            .filter_map(|n| Some((n.name.clone(), n.data_id.clone()?)))
            .collect();
        if !same_cluster(&m.cluster, &theirs) {
            return Err(Error::InvalidInput(format!(
                "this backup is of another cluster: it knows {}, and the cluster of {} ({admin}) knows {}; no node has the same data identity in both",
                describe(&m.cluster),
                status.name,
                describe(&theirs)
            )));
        }
        if let Some(n) = status
            .nodes
            .iter()
            .find(|n| n.name == m.node && n.state == MemberState::Up)
        {
            return Err(Error::InvalidInput(format!(
                "{} is up in that cluster (peer {}): stop it before restoring its data",
                n.name, n.peer
            )));
        }
        check_age(&m, crate::clock::wall_micros() / 1000)?;
    }
    prepare(dir, &m, data_dir)?;
    println!(
        "restored {} (ringkv {}, backup of {} records taken {} s ago) into {}; start it with --name {} --data-dir {}; it takes a new incarnation",
        m.node,
        m.release,
        m.records,
        (crate::clock::wall_micros() / 1000).saturating_sub(m.started_ms) / 1000,
        data_dir.display(),
        m.node,
        data_dir.display()
    );
    Ok(())
}

fn describe(cluster: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = cluster
        .iter()
        .map(|(n, id)| format!("{n} ({id})"))
        .collect();
    if parts.is_empty() {
        "no node".into()
    } else {
        parts.join(", ")
    }
}
