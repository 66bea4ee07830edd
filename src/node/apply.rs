//! How a node applies an entry: to its store, then to its commit log.
//!
//! Every write a node takes, as coordinator or as replica, merges into the
//! store first (so a compaction snapshot taken after it holds the entry)
//! and then appends the record to the log, before it is acknowledged. Here
//! are those steps for [`Shared`], and the conversions between entries and
//! log records. Every write path encodes its record straight from the
//! entry's borrowed parts ([`log_parts`]): no owned record is built.

use bytes::Bytes;

use super::shared::Shared;
use crate::clock::Timestamp;
use crate::log::{kind_of, Appending, Parts, Record, RecordBody};
use crate::ring::Token;
use crate::store::{Applied, Entry, EntryRef, Version};
use crate::values::codec::{Encoded, OwnedBody};
use crate::values::{Body, Simple};

/// The commit log record of `entry` under `key`, borrowed (see
/// [`crate::log::Parts`]).
pub fn log_parts<'a>(key: &'a [u8], entry: &'a Entry) -> crate::error::Result<Parts<'a>> {
    let (kind, body) = match entry.encoded()? {
        Encoded::Dead => (kind_of(true, false), &[][..]),
        Encoded::Str(v) => (kind_of(false, false), v),
        Encoded::Rich(r) => (kind_of(false, true), r),
    };
    let version = entry.version();
    Ok(Parts {
        key,
        kind,
        body,
        ts: version.ts.0,
        node: version.node,
    })
}

/// The commit log record of a stored entry (a snapshot's): a simple body
/// copied as stored, a rich one encoded whole.
pub fn record_of(key: &[u8], e: EntryRef<'_>) -> Record {
    let body = match e.body {
        Body::Simple(Simple::Dead) => RecordBody::Tombstone,
        Body::Simple(Simple::Str(v)) => RecordBody::Value(Bytes::copy_from_slice(v)),
        Body::Rich(c) => RecordBody::Rich(c.encode().into()),
    };
    Record {
        key: Bytes::copy_from_slice(key),
        body,
        ts: e.version.ts.0,
        node: e.version.node,
    }
}

/// The entry a commit log record stands for; a rich body that does not
/// decode is [`crate::error::Error::Corrupt`].
pub fn from_record(rec: Record) -> crate::error::Result<(Bytes, Entry)> {
    let version = Version {
        ts: Timestamp(rec.ts),
        node: rec.node,
    };
    let body = match rec.body {
        RecordBody::Tombstone => OwnedBody::Dead,
        RecordBody::Value(v) => OwnedBody::Str(v),
        RecordBody::Rich(r) => OwnedBody::Rich(r),
    };
    Ok((rec.key, Entry::from_owned_body(version, body)?))
}

impl Shared {
    /// [`Shared::apply_logging`], then waits until the record is in the log.
    pub async fn apply_durably(
        &self,
        pos: &Token,
        key: &[u8],
        entry: &Entry,
    ) -> crate::error::Result<Applied> {
        let (applied, logging) = self.apply_logging(pos, key, entry)?;
        if let Some(logging) = logging {
            logging.await?;
        }
        Ok(applied)
    }

    /// [`Shared::apply_durably`] in two steps: applies now and starts the
    /// log append, returning what to wait for before the write is durable
    /// (`None` when nothing needed logging). A caller's future then holds
    /// a small wait, not the record.
    pub fn apply_logging(
        &self,
        pos: &Token,
        key: &[u8],
        entry: &Entry,
    ) -> crate::error::Result<(Applied, Option<Appending>)> {
        self.writable()?;
        self.apply_staging(pos, key, entry)
    }

    /// Merges `entry` into the store and stages its log record if the
    /// merge changed anything, with no fence check: for anti-entropy,
    /// which checks once per batch, and read repair.
    pub fn apply_staging(
        &self,
        pos: &Token,
        key: &[u8],
        entry: &Entry,
    ) -> crate::error::Result<(Applied, Option<Appending>)> {
        let applied = self.store.apply_at(pos, key, entry);
        let logging = match applied.needs_log() {
            true => Some(self.begin_log(key, entry)?),
            false => None,
        };
        Ok((applied, logging))
    }

    /// Stages `entry`'s log record under `key` (see
    /// [`crate::log::CommitLog::begin_append`]) from its borrowed parts.
    pub fn begin_log(&self, key: &[u8], entry: &Entry) -> crate::error::Result<Appending> {
        self.log.begin_append_parts(log_parts(key, entry)?)
    }

    /// `Error::Misconf` while the commit log takes no writes (see
    /// `log/fence.rs`): a write is refused before it changes anything.
    pub fn writable(&self) -> crate::error::Result<()> {
        match self.log.fenced() {
            None => Ok(()),
            Some(why) => Err(crate::error::Error::Misconf(why)),
        }
    }

    /// Applies a typed write as a replica: checks the key's type and the
    /// elements' presence and merges the delta under the key's lock (see
    /// [`crate::values::Check::apply_to`]). Returns the answer for the
    /// coordinator and the delta applied, when it must be logged. Expiry
    /// is judged at `now_ms`, the caller's reading of the wall clock.
    pub fn apply_checked(
        &self,
        pos: &Token,
        key: &[u8],
        entry: &Entry,
        check: &crate::values::Check,
        now_ms: u64,
    ) -> (crate::message::ApplyResult, Option<Entry>) {
        use crate::message::ApplyResult;
        match self.store.update_at(pos, key, now_ms, |current| {
            check.apply_to(entry, current, now_ms)
        }) {
            Err(crate::values::WrongType) => (ApplyResult::WrongType, None),
            Ok((delta, present, applied)) => (
                ApplyResult::Done {
                    was_live: applied.was_live,
                    present,
                },
                applied.needs_log().then_some(delta),
            ),
        }
    }

    /// [`Shared::apply_checked`] at `now_ms`, then waits until the delta is
    /// in the log.
    pub async fn apply_checked_durably(
        &self,
        pos: &Token,
        key: &Bytes,
        entry: &Entry,
        check: &crate::values::Check,
        now_ms: u64,
    ) -> crate::error::Result<crate::message::ApplyResult> {
        self.writable()?;
        let (result, logged) = self.apply_checked(pos, key, entry, check, now_ms);
        if let Some(delta) = logged {
            // The delta is not held across the wait: only the append is.
            let appending = self.begin_log(key, &delta)?;
            drop(delta);
            appending.await?;
        }
        Ok(result)
    }
}
