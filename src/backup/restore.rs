//! Preparing a node's data dir from a backup directory.
//!
//! The backup is checked whole before anything is written: the manifest
//! must be one this release reads, and `data.snap` must have the size and
//! SHA-256 the manifest names, so a truncated or damaged copy is refused
//! rather than restored in part. The target must be empty or absent:
//! restoring over a data dir would mix two histories of one node, and the
//! operator decides what happens to the old one.
//!
//! The data dir gets `log/snap-000001.snap` (the backup's snapshot, copied;
//! the node replays it at start and appends after it), `placement` (the
//! node's tokens, N and data identity), `generation` and `metadata`. It
//! gets no `incarnation`, so the node draws a new one (see the module doc
//! of [`crate::backup`]). It also gets `restored-from`, naming the node
//! the backup was taken from: a node started on the data dir under another
//! name refuses to start ([`check_restored_name`]), since it would put one
//! node's data and identity on another's ranges.

use std::fs;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Manifest, DATA_FILE, MANIFEST_FILE};
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::placement::{write_atomically, Placement};

/// Reads the manifest of the backup in `dir` and checks that this release
/// reads it and that its snapshot is whole.
pub fn read_backup(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = fs::read_to_string(&path).map_err(|e| {
        Error::InvalidInput(format!(
            "{}: {e} (a backup directory holds {MANIFEST_FILE} and {DATA_FILE}; a backup without its manifest did not finish)",
            path.display()
        ))
    })?;
    let manifest = Manifest::from_json(&text)?;
    manifest.check_readable()?;
    let data = dir.join(DATA_FILE);
    let (bytes, sha256) = hash_file(&data)?;
    if bytes != manifest.bytes || sha256 != manifest.sha256 {
        return Err(Error::InvalidInput(format!(
            "{} is damaged or incomplete: {bytes} bytes with SHA-256 {sha256}, where the manifest names {} bytes with SHA-256 {}",
            data.display(),
            manifest.bytes,
            manifest.sha256
        )));
    }
    metadata_of(&manifest)?;
    Ok(manifest)
}

/// The size and SHA-256 (hex) of the file at `path`.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = fs::File::open(path)
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// The metadata record the manifest carries.
pub fn metadata_of(m: &Manifest) -> Result<Metadata> {
    let bytes = hex::decode(&m.metadata)
        .map_err(|e| Error::InvalidInput(format!("manifest: metadata is not hex: {e}")))?;
    Metadata::from_file_bytes(&bytes)
}

/// Refuses a data dir that holds anything.
pub fn check_empty(data_dir: &Path) -> Result<()> {
    let mut entries = match fs::read_dir(data_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::InvalidInput(format!("{}: {e}", data_dir.display()))),
    };
    if let Some(first) = entries.next() {
        let first = first?.file_name();
        return Err(Error::InvalidInput(format!(
            "{} is not empty (it holds {}): restore only into an empty or new directory, so that no newer data of the node is overwritten; move the old one aside first",
            data_dir.display(),
            first.to_string_lossy()
        )));
    }
    Ok(())
}

/// Writes the data dir `data_dir` from the checked backup in `dir`.
pub fn restore(dir: &Path, m: &Manifest, data_dir: &Path) -> Result<()> {
    check_empty(data_dir)?;
    let data_id = u64::from_str_radix(&m.data_id, 16)
        .map_err(|e| Error::InvalidInput(format!("manifest: data_id: {e}")))?;
    let meta = metadata_of(m)?;
    let log_dir = data_dir.join("log");
    fs::create_dir_all(&log_dir)?;
    let snap = crate::log::snapshot_path(&log_dir, 1);
    fs::copy(dir.join(DATA_FILE), &snap)?;
    fs::File::open(&snap)?.sync_all()?;
    let placement = Placement {
        tokens: m.tokens,
        replication: m.replication,
    };
    write_atomically(
        &data_dir.join(crate::placement::FILE),
        placement.to_text(data_id).as_bytes(),
    )?;
    write_atomically(
        &data_dir.join("generation"),
        format!("{}\n", m.generation).as_bytes(),
    )?;
    meta.store(&data_dir.join("metadata"))?;
    write_atomically(
        &data_dir.join(RESTORED_FILE),
        format!(
            "# ringkv restore wrote this data directory from a backup.\nnode = {}\nrelease = {}\nbackup_started_ms = {}\n",
            m.node, m.release, m.started_ms
        )
        .as_bytes(),
    )?;
    // The files above synced the data dir; the snapshot's entry is in log/.
    fs::File::open(&log_dir)?.sync_all()?;
    Ok(())
}

/// The file naming the node a restored data dir belongs to.
pub const RESTORED_FILE: &str = "restored-from";

/// Refuses to start node `name` on a data dir restored from another
/// node's backup.
pub fn check_restored_name(data_dir: &Path, name: &str) -> Result<()> {
    let path = data_dir.join(RESTORED_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let owner = text
        .lines()
        .find_map(|l| l.strip_prefix("node = "))
        .map(str::trim)
        .ok_or_else(|| Error::Corrupt(format!("{}: no `node = ` line", path.display())))?;
    if owner != name {
        return Err(Error::config(
            "name",
            format!(
                "{name}, but {} was restored from a backup of node {owner}: start it with --name {owner}",
                data_dir.display()
            ),
        ));
    }
    Ok(())
}
