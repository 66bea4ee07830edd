//! Where a node's data sits on the ring: its number of tokens, and the
//! cluster's replication factor N, fixed when its data directory is made.
//!
//! A node's tokens are SHA-1 of `NAME#0` .. `NAME#(T-1)` (SHA-1 of `NAME`
//! when T is 1, the 2014 scripts' placement; see [`crate::ring`]), so a
//! node's whole placement is its name and T. With T = 128, the default
//! ([`DEFAULT_TOKENS`]), every node of a 3- to 16-node cluster holds
//! between 0.85x and 1.16x of the mean number of replicas for every set
//! of names tried (the ring's tests check 0.8x to 1.25x over several),
//! where one token per node gave a 5-node cluster a node with 46.6 % of
//! the ring and one with 0.2 %.
//!
//! The choice is written to `DATA_DIR/placement` the first time a data
//! directory is used, and read back on every start after, whatever the
//! `vnodes` setting says then: changing the default, or the setting,
//! never moves an existing node's data. A data directory made before the
//! file existed keeps one token (what it was made with) unless `vnodes`
//! says otherwise.
//!
//! Peers learn each other's placement from `PeerMsg::Placement`, sent
//! with every heartbeat (protocol 9), and from the `node/NAME` entries of
//! the cluster-wide metadata record, which keep it for nodes that are
//! down. A peer whose N differs from this node's is refused: with two
//! replication factors, a key's replicas would not be the same nodes in
//! every node's view.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Tokens per node for a new data directory when `vnodes` is 0 (auto).
pub const DEFAULT_TOKENS: usize = 128;

/// The largest number of tokens a node may have.
pub const MAX_TOKENS: usize = 4096;

/// The file, under the data directory.
pub const FILE: &str = "placement";

/// A node's placement: its tokens (as a count; the tokens themselves
/// follow from its name) and the replication factor it was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Tokens on the ring.
    pub tokens: usize,
    /// Replicas per key (N).
    pub replication: usize,
}

impl Placement {
    /// The file's text, with the data directory's identity `id`.
    pub fn to_text(&self, id: u64) -> String {
        format!(
            "# Written when this data directory was first used; ringkv reads it on\n\
             # every start. Changing it moves this node's data on the ring.\n\
             tokens = {}\nreplication = {}\nid = {id}\n",
            self.tokens, self.replication
        )
    }

    /// Reads the file's text: the placement and the data directory's
    /// identity.
    pub fn from_text(text: &str) -> std::result::Result<(Placement, u64), String> {
        let (mut tokens, mut replication, mut id) = (None, None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("`{line}` is not `key = value`"))?;
            let value: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{}: `{}` is not a number", key.trim(), value.trim()))?;
            match key.trim() {
                "tokens" => tokens = Some(value as usize),
                "replication" => replication = Some(value as usize),
                "id" => id = Some(value),
                other => return Err(format!("unknown key `{other}`")),
            }
        }
        let tokens = tokens.ok_or("no `tokens` line")?;
        let replication = replication.ok_or("no `replication` line")?;
        let id = id.ok_or("no `id` line")?;
        if tokens == 0 || tokens > MAX_TOKENS {
            return Err(format!("tokens: {tokens} is not within 1..={MAX_TOKENS}"));
        }
        if replication == 0 {
            return Err("replication: 0 is not a replication factor".into());
        }
        Ok((
            Placement {
                tokens,
                replication,
            },
            id,
        ))
    }

    /// The placement of the node whose data directory is `dir`, writing
    /// the file the first time. `vnodes` is the setting (0: auto), `n` the
    /// configured replication factor, and `existed` whether the directory
    /// held a node's data before this start (one made before the file
    /// existed keeps one token unless `vnodes` says otherwise).
    ///
    /// A configured N that differs from the one the directory was made for
    /// is refused, naming both and the file: the node would place keys
    /// differently from the rest of its cluster.
    ///
    /// Also returns the data directory's identity: a random number drawn
    /// when the file is written, which stays with the directory (unlike
    /// the counters' incarnation, redrawn after an unclean stop), so a
    /// node that left or was forgotten is known again if its data comes
    /// back, and a new, empty directory under its name is not it.
    pub fn settle(dir: &Path, vnodes: usize, n: usize, existed: bool) -> Result<(Placement, u64)> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (p, id) = Placement::from_text(&text)
                    .map_err(|why| Error::Corrupt(format!("{}: {why}", path.display())))?;
                if p.replication != n {
                    return Err(Error::config(
                        "replication",
                        format!(
                            "{n}, but {} was made for replication {}; every node of a cluster \
                             needs the same N (to change it, stop every node and edit that file \
                             on each)",
                            path.display(),
                            p.replication
                        ),
                    ));
                }
                if vnodes != 0 && vnodes != p.tokens {
                    tracing::warn!(
                        vnodes, tokens = p.tokens, file = %path.display(),
                        "vnodes setting ignored: this data directory keeps the tokens it was made with"
                    );
                }
                Ok((p, id))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let tokens = match (vnodes, existed) {
                    (0, true) => 1,
                    (0, false) => DEFAULT_TOKENS,
                    (v, _) => v,
                };
                let p = Placement {
                    tokens,
                    replication: n,
                };
                let id = rand::random::<u64>();
                write_atomically(&path, p.to_text(id).as_bytes())?;
                Ok((p, id))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Writes `bytes` beside `path`, fsyncs, renames it over `path` and fsyncs
/// the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// How the metadata record's node entries are named: `node/NAME`.
pub const RECORD_PREFIX: &str = "node/";

/// The metadata record's entry for node `name`.
pub fn record_name(name: &str) -> String {
    format!("{RECORD_PREFIX}{name}")
}

/// What the metadata record keeps of a node (its `node/NAME` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its placement.
    pub placement: Placement,
    /// The identity of its data directory (see `node::data_id`).
    pub data_id: u64,
}

/// How the metadata record's departure entries are named:
/// `gone/NAME/DATA_ID`, one per data directory that left or was
/// forgotten, so a replacement (a new data directory under the name) is
/// told apart from the old data coming back.
pub const GONE_PREFIX: &str = "gone/";

/// The departure entry of node `name` whose data directory is
/// `data_id`.
pub fn gone_name(name: &str, data_id: u64) -> String {
    format!("{GONE_PREFIX}{name}/{data_id:016x}")
}

/// Where a departing node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Departure {
    /// `ringkv leave` runs: it takes no writes and hands what it holds to
    /// the nodes that take over its ranges.
    Leaving,
    /// It handed everything over and stopped.
    Left,
    /// `ringkv forget` removed it while it was down.
    Forgotten,
}

impl Departure {
    /// Whether the node is gone (not merely leaving).
    pub fn is_gone(self) -> bool {
        !matches!(self, Departure::Leaving)
    }

    /// The word `/status` shows.
    pub fn word(self) -> &'static str {
        match self {
            Departure::Leaving => "leaving",
            Departure::Left => "left",
            Departure::Forgotten => "forgotten",
        }
    }
}

/// A departure entry's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoneRecord {
    /// Where it stands.
    pub departure: Departure,
    /// The data directory it concerns.
    pub data_id: u64,
}

impl crate::encoding::Wire for GoneRecord {}

impl GoneRecord {
    /// The entry's value.
    pub fn encode(&self) -> Result<bytes::Bytes> {
        Ok(crate::encoding::to_vec(self)?.into())
    }
}

/// Every departure in `meta`: (node name, record, when it was written).
pub fn departures(
    meta: &crate::metadata::Metadata,
) -> Vec<(String, GoneRecord, crate::store::Version)> {
    meta.entries()
        .filter_map(|(entry, reg)| {
            let rest = entry.strip_prefix(GONE_PREFIX)?;
            let (name, _) = rest.rsplit_once('/')?;
            let record: GoneRecord = crate::encoding::from_slice(&reg.value).ok()?;
            Some((name.to_string(), record, reg.version))
        })
        .collect()
}

/// The departure of node `name` with data directory `data_id`, if
/// any.
pub fn departure_of(
    meta: &crate::metadata::Metadata,
    name: &str,
    data_id: u64,
) -> Option<Departure> {
    let reg = meta.get(&gone_name(name, data_id))?;
    let record: GoneRecord = crate::encoding::from_slice(&reg.value).ok()?;
    Some(record.departure)
}

impl crate::encoding::Wire for NodeRecord {}

impl NodeRecord {
    /// The entry's value.
    pub fn encode(&self) -> Result<bytes::Bytes> {
        Ok(crate::encoding::to_vec(self)?.into())
    }

    /// The record an entry's value holds; `None` for one this build cannot
    /// read (written by a newer release), which is then left alone.
    pub fn decode(bytes: &[u8]) -> Option<NodeRecord> {
        crate::encoding::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn a_new_directory_gets_the_default_and_keeps_it() {
        let d = dir();
        let (p, id) = Placement::settle(d.path(), 0, 3, false).unwrap();
        assert_eq!((p.tokens, p.replication), (DEFAULT_TOKENS, 3));
        // A later start with another setting keeps what the directory has.
        assert_eq!(Placement::settle(d.path(), 16, 3, true).unwrap(), (p, id));
        // Another directory is another identity.
        let other = dir();
        assert_ne!(Placement::settle(other.path(), 0, 3, false).unwrap().1, id);
    }

    #[test]
    fn an_existing_directory_without_the_file_keeps_one_token() {
        let d = dir();
        assert_eq!(Placement::settle(d.path(), 0, 3, true).unwrap().0.tokens, 1);
        let d = dir();
        assert_eq!(Placement::settle(d.path(), 8, 3, true).unwrap().0.tokens, 8);
    }

    #[test]
    fn another_replication_factor_is_refused_with_both_named() {
        let d = dir();
        Placement::settle(d.path(), 0, 3, false).unwrap();
        let err = Placement::settle(d.path(), 0, 5, true).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("config: replication: 5, but "), "{text}");
        assert!(text.contains("made for replication 3"), "{text}");
    }

    #[test]
    fn a_node_record_round_trips() {
        let r = NodeRecord {
            placement: Placement {
                tokens: 128,
                replication: 3,
            },
            data_id: 7,
        };
        assert_eq!(NodeRecord::decode(&r.encode().unwrap()), Some(r.clone()));
        let mut meta = crate::metadata::Metadata::default();
        let gone = GoneRecord {
            departure: Departure::Forgotten,
            data_id: 7,
        };
        let v = crate::store::Version::default();
        meta.set(&gone_name("n/x", 7), v, gone.encode().unwrap());
        meta.set(&record_name("n/x"), v, r.encode().unwrap());
        assert_eq!(departures(&meta), vec![("n/x".to_string(), gone, v)]);
        assert_eq!(departure_of(&meta, "n/x", 7), Some(Departure::Forgotten));
        assert_eq!(departure_of(&meta, "n/x", 8), None);
        assert_eq!(NodeRecord::decode(b"\xff"), None);
    }

    #[test]
    fn the_file_round_trips_and_damage_is_named() {
        let p = Placement {
            tokens: 64,
            replication: 2,
        };
        assert_eq!(Placement::from_text(&p.to_text(42)), Ok((p, 42)));
        assert_eq!(
            Placement::from_text("tokens = 0\nreplication = 3\nid = 1"),
            Err("tokens: 0 is not within 1..=4096".into())
        );
        assert_eq!(
            Placement::from_text("tokens = x"),
            Err("tokens: `x` is not a number".into())
        );
        assert_eq!(
            Placement::from_text("replication = 3"),
            Err("no `tokens` line".into())
        );
        let d = dir();
        std::fs::write(d.path().join(FILE), "garbage").unwrap();
        let err = Placement::settle(d.path(), 0, 3, true).unwrap_err();
        assert!(err.to_string().contains("is not `key = value`"), "{err}");
    }
}
