//! ACL LOG: this node's record of refused commands, keys and logins, as
//! Redis 7.0 keeps it (each node keeps its own, as each Redis does).
//!
//! An event equal to one of the ten newest entries in reason, context,
//! object and user, within 60 seconds of it, counts into that entry and
//! moves it to the front; at most 128 entries are kept. Passwords never
//! enter it: a failed login records the command and the user name.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::resp::codec::Reply;

/// Redis's `acllog-max-len` default.
const MAX_LEN: usize = 128;
/// How many of the newest entries an event may be grouped with.
const GROUP_WITH: usize = 10;
/// How old an entry may be for an event to be grouped with it.
const GROUP_WITHIN: Duration = Duration::from_secs(60);

/// Why an entry was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A command the user may not run.
    Command,
    /// A key it may not touch.
    Key,
    /// A failed AUTH or HELLO AUTH.
    Auth,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Auth => "auth",
        }
    }
}

/// One event, before it is counted.
#[derive(Clone, Debug)]
pub struct Event {
    /// Why.
    pub reason: Reason,
    /// `toplevel` or `multi`.
    pub multi: bool,
    /// The command's full name, the key, or the AUTH command as typed.
    pub object: Bytes,
    /// The user.
    pub username: Bytes,
    /// The client's CLIENT LIST line.
    pub client_info: String,
}

#[derive(Debug)]
struct Entry {
    event: Event,
    count: u64,
    created: Instant,
}

/// The log.
#[derive(Debug, Default)]
pub struct AclLog {
    entries: Mutex<VecDeque<Entry>>,
}

impl AclLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `event` at `now`.
    pub fn add(&self, event: Event, now: Instant) {
        let mut entries = self.lock();
        let same = |e: &Entry| {
            e.event.reason == event.reason
                && e.event.multi == event.multi
                && e.event.object == event.object
                && e.event.username == event.username
                && now.saturating_duration_since(e.created) <= GROUP_WITHIN
        };
        if let Some(i) = entries.iter().take(GROUP_WITH).position(same) {
            let mut e = entries.remove(i).expect("found above");
            e.count += 1;
            e.event.client_info = event.client_info;
            e.created = now;
            entries.push_front(e);
            return;
        }
        entries.push_front(Entry {
            event,
            count: 1,
            created: now,
        });
        entries.truncate(MAX_LEN);
    }

    /// Forgets every entry (ACL LOG RESET).
    pub fn reset(&self) {
        self.lock().clear();
    }

    /// The newest `count` entries as ACL LOG answers them.
    pub fn reply(&self, count: usize, now: Instant) -> Reply {
        let entries = self.lock();
        let shown = entries.iter().take(count).map(|e| {
            // In milliseconds, as Redis counts it.
            let age = now.saturating_duration_since(e.created).as_millis() as f64 / 1000.0;
            let context = if e.event.multi { "multi" } else { "toplevel" };
            Reply::map([
                ("count", Reply::Integer(e.count as i64)),
                ("reason", Reply::bulk(e.event.reason.as_str())),
                ("context", Reply::bulk(context)),
                ("object", Reply::Bulk(e.event.object.clone())),
                ("username", Reply::Bulk(e.event.username.clone())),
                ("age-seconds", Reply::Double(age)),
                ("client-info", Reply::bulk(e.event.client_info.clone())),
            ])
        });
        Reply::Array(shown.collect())
    }
}
