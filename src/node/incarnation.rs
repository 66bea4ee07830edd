//! The identity of this node's data, for its shares of counters.
//!
//! A counter is the sum of shares, one per identity, each written only by
//! its owner with rising totals (see `values`). An owner that forgot part
//! of its share and went on counting from there would overwrite, on every
//! other replica, the increments it forgot; one that came back from an
//! older copy of its data would do the same. So the identity belongs to
//! one incarnation of the data, not to the node: a random number kept in
//! the data dir (`incarnation`), drawn again whenever the data may not be
//! all there:
//!
//! - the file is missing (a new or lost data dir);
//! - the node did not stop cleanly (no `clean-stop` marker, which a clean
//!   stop writes after closing the commit log) and the log is not synced
//!   on every write, so a machine crash may have taken its tail.
//!
//! A node then starts a new share at zero; its old share, wherever it was
//! replicated, keeps counting in the sum and is never written again.
//! Restoring a backup must remove `incarnation` (the backup tooling's
//! job): the restored data is older than what its owner had counted.

use std::path::Path;

use tracing::info;

use crate::error::{Error, Result};

const FILE: &str = "incarnation";
const CLEAN_STOP: &str = "clean-stop";

/// This start's data identity (see the module doc). `synced_writes` says
/// whether every log write is synced before it is acknowledged.
pub fn open(dir: &Path, synced_writes: bool) -> Result<u64> {
    let path = dir.join(FILE);
    let stored = match std::fs::read_to_string(&path) {
        Ok(s) => Some(
            s.trim()
                .parse::<u64>()
                .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let clean = match std::fs::remove_file(dir.join(CLEAN_STOP)) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    match stored {
        Some(id) if clean || synced_writes => Ok(id),
        old => {
            let id = rand::random::<u64>();
            // On a full disk the new identity lives in memory only, which
            // is safe: the next start finds the old one, not cleanly
            // stopped, and draws yet another.
            if let Err(e) = write_synced(dir, FILE, &format!("{id}\n")) {
                tracing::warn!(error = %e, "cannot store the new data incarnation; keeping it in memory");
            }
            info!(
                previous = ?old,
                incarnation = id,
                "new data incarnation: counters start new shares ({})",
                if old.is_none() { "no earlier one" } else { "the last stop was not clean" }
            );
            Ok(id)
        }
    }
}

/// Marks a clean stop: every record is in the log and synced.
pub fn mark_clean_stop(dir: &Path) -> Result<()> {
    write_synced(dir, CLEAN_STOP, "")
}

fn write_synced(dir: &Path, name: &str, text: &str) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_survives_only_clean_stops_unless_writes_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), false).unwrap();
        // Not stopped cleanly: a new one.
        let second = open(dir.path(), false).unwrap();
        assert_ne!(first, second);
        mark_clean_stop(dir.path()).unwrap();
        assert_eq!(open(dir.path(), false).unwrap(), second);
        // The marker is used up by the start that read it.
        assert_ne!(open(dir.path(), false).unwrap(), second);
        let kept = open(dir.path(), true).unwrap();
        assert_eq!(
            open(dir.path(), true).unwrap(),
            kept,
            "synced writes lose nothing"
        );
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        assert_ne!(
            open(dir.path(), true).unwrap(),
            kept,
            "a lost file is a new identity"
        );
    }
}
