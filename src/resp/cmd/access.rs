//! How commands read a key whole and write what they computed from it:
//! the helpers every read-modify-write shares.
//!
//! A command reads a key with a quorum read ([`read_key`]), which answers
//! the merged entry as the replicas hold it, expired or deleted ones
//! included: a write computed from it is stamped after the version read
//! (see `Shared::write_with`), which a deleted or expired key has too. The
//! command looks at the key as it is *now* ([`Found::live`]), by this
//! node's wall clock, read once per command so that every check in it
//! agrees.

use bytes::Bytes;

use super::{error_reply, wrong_type};
use crate::coordinator::{Quorum, WriteOutcome};
use crate::node::shared::Shared;
use crate::resp::codec::Reply;
use crate::store::{Entry, Version};
use crate::values::{Check, Kind, Part, Want};

/// What a quorum read found of a key.
#[derive(Debug)]
pub struct Found {
    /// The merged entry, tombstones and expired keys included.
    pub entry: Option<Entry>,
    /// This node's wall clock when the read returned (ms since the epoch).
    pub now: u64,
}

impl Found {
    /// The entry if the key exists now.
    pub fn live(&self) -> Option<&Entry> {
        self.entry.as_ref().filter(|e| e.exists(self.now))
    }

    /// The version read, for a write computed from it.
    pub fn seen(&self) -> Option<Version> {
        self.entry.as_ref().map(Entry::version)
    }

    /// The key's expiry deadline now, if it exists and has one.
    pub fn deadline(&self) -> Option<u64> {
        self.live().and_then(Entry::deadline)
    }

    /// The string the key holds now, or WRONGTYPE.
    pub fn string(&self) -> Result<Option<Bytes>, Reply> {
        match &self.entry {
            None => Ok(None),
            Some(e) => e.string_value(self.now).map_err(|_| wrong_type()),
        }
    }
}

/// A quorum read of `key` (see the module doc).
pub async fn read_key(shared: &Shared, key: Bytes, q: Quorum) -> Result<Found, Reply> {
    let entry = shared.read(key, q).await.map_err(|e| error_reply(&e))?;
    Ok(Found {
        entry,
        now: crate::clock::wall_millis(),
    })
}

/// A quorum read of `key` as a string (see [`read_key`]): what was found
/// and the value it holds now, `None` when there is none; WRONGTYPE for
/// another type.
pub async fn read_string_key(
    shared: &Shared,
    key: Bytes,
    q: Quorum,
) -> Result<(Found, Option<Bytes>), Reply> {
    let found = read_key(shared, key, q).await?;
    let value = found.string()?;
    Ok((found, value))
}

/// The write of a read-modify-write: what `build` makes of the write's
/// version, stamped after what `found` read.
pub async fn write_after(
    shared: &Shared,
    key: Bytes,
    q: Quorum,
    found: &Found,
    build: impl FnOnce(Version) -> Entry,
) -> Result<WriteOutcome, Reply> {
    shared
        .write_with(key, q, Some(found.seen()), build)
        .await
        .map_err(|e| error_reply(&e))
}

/// What a quorum read of part of a key found ([`Shared::read_part`]):
/// the part if the key exists now as `kind`, `None` if it does not exist,
/// WRONGTYPE if it holds another type.
pub async fn read_part_as(
    shared: &Shared,
    key: Bytes,
    kind: Kind,
    want: Want,
    q: Quorum,
) -> Result<Option<Part>, Reply> {
    let part = shared
        .read_part(key, want, q)
        .await
        .map_err(|e| error_reply(&e))?;
    let now = crate::clock::wall_millis();
    match part.as_ref().and_then(|p| p.kind(now)) {
        None => Ok(None),
        Some(k) if k == kind => Ok(part),
        Some(_) => Err(wrong_type()),
    }
}

/// A read of the elements `names` (hash fields or set members, as `kind`
/// says; none: the head only) of the key `args[1]`, answered by `f` from
/// the part read (`None`: the key does not exist), or WRONGTYPE.
pub fn read_elements(
    call: super::Call<'_>,
    kind: Kind,
    names: Vec<Bytes>,
    f: impl FnOnce(Option<Part>) -> Reply + Send + 'static,
) -> super::Run {
    let shared = call.shared.clone();
    let q = call.conn.quorum;
    let key = call.args[1].clone();
    super::Run::later(async move {
        let want = match kind {
            _ if names.is_empty() => Want::Head,
            Kind::Set => Want::Members(names),
            _ => Want::Fields(names),
        };
        match read_part_as(&shared, key, kind, want, q).await {
            Ok(part) => f(part),
            Err(reply) => reply,
        }
    })
}

/// A whole quorum read of `key` as `kind`: the entry if the key exists now
/// as `kind`, `None` if it does not exist, WRONGTYPE if it holds another
/// type; with what was found, for a write computed from it.
pub async fn read_as(
    shared: &Shared,
    key: Bytes,
    kind: Kind,
    q: Quorum,
) -> Result<(Option<Entry>, Found), Reply> {
    let found = read_key(shared, key, q).await?;
    match found.live().map(|e| e.kind(found.now)) {
        None => Ok((None, found)),
        Some(Some(k)) if k == kind => Ok((found.live().cloned(), found)),
        Some(_) => Err(wrong_type()),
    }
}

/// A typed write (HSET, SADD, HDEL, SREM...) of what `build` makes of the
/// write's version, checked by every replica against `check` (see
/// `Shared::write_checked`); answers which of the checked elements were
/// present before.
pub async fn write_checked(
    shared: &Shared,
    key: Bytes,
    q: Quorum,
    check: &Check,
    build: impl FnOnce(Version) -> Entry,
) -> Result<crate::values::Present, Reply> {
    shared
        .write_checked(key, q, check, build)
        .await
        .map(|o| o.present)
        .map_err(|e| error_reply(&e))
}

/// `names` without repeats, in first-seen order (a field or member named
/// twice in one command counts once, as in Redis).
pub fn distinct(names: impl IntoIterator<Item = Bytes>) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for name in names {
        // Few names (nearly always one): compared, no set built.
        if out.len() < DISTINCT_BY_SCAN {
            if !out.contains(&name) {
                out.push(name);
            }
            continue;
        }
        if seen.is_empty() {
            seen.extend(out.iter().cloned());
        }
        if seen.insert(name.clone()) {
            out.push(name);
        }
    }
    out
}

/// Up to this many names, [`distinct`] compares each with those before.
const DISTINCT_BY_SCAN: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// Without repeats, in first-seen order, on either side of the
    /// number of names compared by scanning.
    #[test]
    fn distinct_keeps_the_first_of_each_name_in_order() {
        for n in [
            0,
            1,
            2,
            DISTINCT_BY_SCAN - 1,
            DISTINCT_BY_SCAN,
            3 * DISTINCT_BY_SCAN,
        ] {
            // Name i is (i * 7) % 11, so names repeat once n passes 11.
            let names: Vec<Bytes> = (0..n)
                .map(|i| Bytes::from(format!("{}", i * 7 % 11)))
                .collect();
            let mut want: Vec<Bytes> = Vec::new();
            for name in &names {
                if !want.contains(name) {
                    want.push(name.clone());
                }
            }
            assert_eq!(distinct(names.clone()), want, "{n} names");
            assert_eq!(want.len(), n.min(11));
        }
    }
}
