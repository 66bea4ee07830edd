//! Names of the files in a log directory, and the few file-system steps
//! (listing, creating a segment, syncing the directory) that the writer,
//! recovery and compaction share.
//!
//! Names carry a zero-padded sequence number so a plain sort is replay
//! order: `log-000007.seg` is a segment, `snap-000007.snap` a snapshot that
//! replaces every segment numbered below 7, and `snap-000007.tmp` a
//! snapshot still being written, which nothing ever reads.
//!
//! Deliberately left out: locking the directory against a second process
//! (the node owns its data dir), and any file other than these three kinds,
//! which is left alone.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::{file_header, FileKind, FILE_HEADER_LEN};
use crate::error::Result;

/// Path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("log-{seq:06}.seg"))
}

/// Path of the finished snapshot `seq` in `dir`.
pub fn snapshot_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snap-{seq:06}.snap"))
}

/// Path of the snapshot `seq` while it is being written.
pub fn snapshot_tmp_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snap-{seq:06}.tmp"))
}

/// What a directory holds, each list sorted by sequence number.
#[derive(Debug, Default)]
pub struct Listing {
    /// Segment numbers.
    pub segments: Vec<u64>,
    /// Finished snapshot numbers.
    pub snapshots: Vec<u64>,
    /// Leftover temporary snapshot files (a compaction that did not finish).
    pub temps: Vec<PathBuf>,
}

/// List the log files in `dir`.
pub fn list(dir: &Path) -> Result<Listing> {
    let mut out = Listing::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse(name, "log-", ".seg") {
            out.segments.push(seq);
        } else if let Some(seq) = parse(name, "snap-", ".snap") {
            out.snapshots.push(seq);
        } else if parse(name, "snap-", ".tmp").is_some() {
            out.temps.push(entry.path());
        }
    }
    out.segments.sort_unstable();
    out.snapshots.sort_unstable();
    Ok(out)
}

fn parse(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Make the directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Create segment `seq` with its header, synced together with the
/// directory entry, so a record later written into it cannot be lost
/// because the file itself was.
pub fn create_segment(dir: &Path, seq: u64) -> Result<File> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let written = file
        .write_all(&file_header(FileKind::Segment, seq))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A full disk: the file holds no record yet, and must not stop
        // the next attempt (which creates it anew).
        if let Err(removed) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), error = %removed, "could not remove a segment left half-created");
        }
        return Err(e.into());
    }
    sync_dir(dir)?;
    Ok(file)
}

/// Bytes a freshly created segment takes.
pub const EMPTY_SEGMENT_LEN: u64 = FILE_HEADER_LEN as u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        for p in [
            segment_path(dir.path(), 10),
            segment_path(dir.path(), 2),
            snapshot_path(dir.path(), 5),
            snapshot_tmp_path(dir.path(), 9),
            dir.path().join("log-x.seg"),
            dir.path().join("README"),
        ] {
            std::fs::write(p, b"").unwrap();
        }
        let l = list(dir.path()).unwrap();
        assert_eq!(l.segments, vec![2, 10]);
        assert_eq!(l.snapshots, vec![5]);
        assert_eq!(l.temps, vec![snapshot_tmp_path(dir.path(), 9)]);
    }

    #[test]
    fn create_segment_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        create_segment(dir.path(), 1).unwrap();
        assert!(create_segment(dir.path(), 1).is_err());
        let len = std::fs::metadata(segment_path(dir.path(), 1))
            .unwrap()
            .len();
        assert_eq!(len, EMPTY_SEGMENT_LEN);
    }
}
