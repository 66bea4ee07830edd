//! The cluster-wide metadata record: small facts every node must know.
//!
//! Data lives on the N replicas of its key; a few facts are about the
//! whole cluster and must reach every node, including one that was down or
//! partitioned away when they changed, and must survive restarts. Today
//! that is the FLUSHALL marker ("every version stamped at or before this
//! time is dead"); the nodes that left or were forgotten, and ACL users,
//! come next. They live here, in one record that every node holds whole.
//!
//! The record is a map from a name (`flushall`, later `node/<name>`,
//! `user/<name>`) to a [`Register`]: a value and the [`Version`] (hybrid
//! logical clock timestamp, writer id) of the write that set it. Two
//! records merge entry by entry, last writer wins, exactly as the store
//! merges keys, so the merge is commutative, associative and idempotent
//! (property-tested below) and nodes may exchange records in any order, any
//! number of times. [`Metadata::digest`] is a cheap summary: nodes compare
//! digests in every heartbeat round and send their whole record to a peer
//! whose digest differs, so a change reaches every node within a heartbeat
//! interval of it being reachable.
//!
//! On disk the record is one file, `DATA_DIR/metadata`, replaced
//! atomically (written aside, fsynced, renamed, directory fsynced) on every
//! change: magic, a CRC-32 of the body, and the body in the peer encoding.
//! A damaged file stops the node at start with its path, rather than
//! letting it forget a flush and serve what it flushed.
//!
//! Deliberately left out: deleting entries (a fact is overwritten, never
//! removed, so a node that was away cannot bring an old one back), and
//! size limits (the record holds a handful of entries).

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Version;

/// The entry holding the FLUSHALL marker.
pub const FLUSHALL: &str = "flushall";

/// Marks a metadata file ("RKVMETA" and a format version).
const MAGIC: &[u8; 8] = b"RKVMETA\x01";

/// One fact: a value and the version of the write that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// When, and by which node, it was set.
    pub version: Version,
    /// The value (empty for a marker whose version is the fact).
    pub value: Bytes,
}

/// The cluster-wide record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    entries: BTreeMap<String, Register>,
}

impl crate::encoding::Wire for Metadata {}

impl Metadata {
    /// The entry `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Register> {
        self.entries.get(name)
    }

    /// Every entry, in name order.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Register)> {
        self.entries.iter()
    }

    /// Sets `name` to `value` at `version` unless it holds a newer version
    /// already. Returns whether it changed.
    pub fn set(&mut self, name: &str, version: Version, value: Bytes) -> bool {
        let new = Register { version, value };
        match self.entries.get(name) {
            Some(old) if !wins(&new, old) => false,
            _ => {
                self.entries.insert(name.to_string(), new);
                true
            }
        }
    }

    /// Merges `other` into this record, entry by entry, last writer wins.
    /// Returns whether anything changed.
    pub fn merge(&mut self, other: &Metadata) -> bool {
        let mut changed = false;
        for (name, reg) in &other.entries {
            changed |= self.set(name, reg.version, reg.value.clone());
        }
        changed
    }

    /// The FLUSHALL marker: every version at or before its timestamp is
    /// dead.
    pub fn flush_marker(&self) -> Option<Version> {
        self.get(FLUSHALL).map(|r| r.version)
    }

    /// A summary that differs (with overwhelming likelihood) whenever two
    /// records do.
    pub fn digest(&self) -> u64 {
        let mut bytes = Vec::new();
        for (name, reg) in &self.entries {
            bytes.extend_from_slice(&(name.len() as u64).to_be_bytes());
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(&reg.version.ts.0.to_be_bytes());
            bytes.extend_from_slice(&reg.version.node.to_be_bytes());
            bytes.extend_from_slice(&(reg.value.len() as u64).to_be_bytes());
            bytes.extend_from_slice(&reg.value);
        }
        crate::encoding::stable_hash(0x6d65_7461, &bytes)
    }

    /// The file form: magic, CRC-32 of the body, body.
    pub fn to_file_bytes(&self) -> Result<Vec<u8>> {
        let body = crate::encoding::to_vec(self)?;
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads the file form; damage is [`Error::Corrupt`].
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Metadata> {
        let corrupt = |why: &str| Error::Corrupt(format!("metadata file: {why}"));
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(corrupt("not a ringkv metadata file (bad magic)"));
        }
        let crc = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let body = &bytes[12..];
        if crc32fast::hash(body) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        crate::encoding::from_slice(body).map_err(|e| corrupt(&e.to_string()))
    }

    /// Loads the record kept at `path`; an empty record if there is none.
    pub fn load(path: &Path) -> Result<Metadata> {
        match std::fs::read(path) {
            Ok(bytes) => Metadata::from_file_bytes(&bytes).map_err(|e| match e {
                Error::Corrupt(why) => Error::Corrupt(format!("{}: {why}", path.display())),
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Metadata::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the file at `path` with this record, atomically: written
    /// beside it, fsynced, renamed over it, and the directory fsynced.
    pub fn store(&self, path: &Path) -> Result<()> {
        let bytes = self.to_file_bytes()?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Whether `a` wins over `b`: the higher version; for one version with two
/// values (which no correct node writes), the greater value, so the merge
/// stays a total order.
fn wins(a: &Register, b: &Register) -> bool {
    (a.version, &a.value) > (b.version, &b.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use proptest::prelude::*;

    fn v(ts: u64, node: u64) -> Version {
        Version {
            ts: Timestamp(ts),
            node,
        }
    }

    fn arb_record() -> impl Strategy<Value = Metadata> {
        proptest::collection::vec(
            (
                prop_oneof![Just("flushall"), Just("node/a"), Just("user/x")],
                0u64..6,
                0u64..3,
                prop_oneof![Just(""), Just("1"), Just("2")],
            ),
            0..6,
        )
        .prop_map(|sets| {
            let mut m = Metadata::default();
            for (name, ts, node, value) in sets {
                m.set(name, v(ts, node), Bytes::from(value));
            }
            m
        })
    }

    fn merged(a: &Metadata, b: &Metadata) -> Metadata {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_and_idempotent(
            a in arb_record(), b in arb_record(), c in arb_record()
        ) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a.clone());
        }

        #[test]
        fn equal_records_have_equal_digests_and_a_merge_that_changes_the_digest_says_so(
            a in arb_record(), b in arb_record()
        ) {
            prop_assert_eq!(merged(&a, &b).digest(), merged(&b, &a).digest());
            let mut c = a.clone();
            let changed = c.merge(&b);
            prop_assert_eq!(changed, c != a);
        }

        #[test]
        fn the_file_form_round_trips(a in arb_record()) {
            let bytes = a.to_file_bytes().unwrap();
            prop_assert_eq!(Metadata::from_file_bytes(&bytes).unwrap(), a);
        }
    }

    #[test]
    fn a_later_write_wins_and_an_older_one_is_ignored() {
        let mut m = Metadata::default();
        assert!(m.set(FLUSHALL, v(10, 1), Bytes::new()));
        assert!(!m.set(FLUSHALL, v(9, 2), Bytes::new()));
        assert!(m.set(FLUSHALL, v(10, 2), Bytes::new()));
        assert_eq!(m.flush_marker(), Some(v(10, 2)));
    }

    #[test]
    fn a_damaged_file_is_refused_at_every_byte() {
        let mut m = Metadata::default();
        m.set(FLUSHALL, v(42, 7), Bytes::new());
        let good = m.to_file_bytes().unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(Metadata::from_file_bytes(&bad).is_err(), "flip at {i}");
        }
        for len in 0..good.len() {
            assert!(
                Metadata::from_file_bytes(&good[..len]).is_err(),
                "cut at {len}"
            );
        }
    }

    #[test]
    fn store_and_load_round_trip_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata");
        assert_eq!(Metadata::load(&path).unwrap(), Metadata::default());
        let mut m = Metadata::default();
        m.set(FLUSHALL, v(5, 1), Bytes::new());
        m.store(&path).unwrap();
        assert_eq!(Metadata::load(&path).unwrap(), m);
        assert!(!path.with_extension("tmp").exists());
    }
}
