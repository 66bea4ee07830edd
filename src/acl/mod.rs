//! ACL users, the same on every node: Redis 7.0's users, passwords and
//! permissions, kept in the cluster-wide metadata record.
//!
//! - **Where users live.** Each user is one entry of the metadata record
//!   (`user/` and the hex of its name), whose value is the user's `ACL
//!   LIST` line (`user.rs`), passwords as SHA-256 only; a deleted user is
//!   an empty value, so the deletion itself merges last-writer-wins and a
//!   node that was away cannot bring the user back. Every node holds every
//!   user and checks every command locally (`perm.rs`): no request leaves
//!   the node to decide a permission.
//! - **How changes spread.** `ACL SETUSER` and `DELUSER` set the entry and
//!   push the record to every node up, waiting for each to write it to
//!   disk (`node/meta.rs`), then answer. A node that was away learns it
//!   from the heartbeats' record digests once reached. Two changes of one
//!   user on both sides of a partition: the later one wins whole.
//! - **The default user.** Until the record holds an entry for `default`,
//!   each node derives it from its own `requirepass` (`on nopass ~* &*
//!   +@all`, or with that password); once `ACL SETUSER default ...` has
//!   written one, the record wins everywhere and `requirepass` is no
//!   longer read. The default user cannot be deleted.
//! - **Connections** hold their user's name and a copy of its compiled
//!   permissions, refreshed when the users' generation moves (one atomic
//!   load per command; none of the rest for an unrestricted user). A
//!   deleted user's connections are closed on every node.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tracing::warn;

use crate::metadata::Metadata;

pub mod log;
pub mod perm;
pub mod user;

pub use perm::{Denied, Perms};
pub use user::User;

/// The prefix of users' entries in the metadata record.
const PREFIX: &str = "user/";

/// The record entry of user `name`.
pub fn entry_name(name: &[u8]) -> String {
    format!("{PREFIX}{}", hex::encode(name))
}

/// A user and its compiled permissions.
#[derive(Debug)]
pub struct Entry {
    /// The user.
    pub user: User,
    /// What it may do.
    pub perms: Arc<Perms>,
}

/// Every user, by name (byte order, as Redis lists them).
#[derive(Debug, Default)]
pub struct Users {
    by_name: BTreeMap<Bytes, Arc<Entry>>,
}

impl Users {
    /// The users of `meta`, and the default user from `requirepass` unless
    /// the record has one.
    pub fn from_record(meta: &Metadata, requirepass: Option<&str>) -> Users {
        let mut by_name = BTreeMap::new();
        for (name, reg) in meta.entries().filter(|(n, _)| n.starts_with(PREFIX)) {
            if reg.value.is_empty() {
                continue;
            }
            match User::from_line(&reg.value) {
                Ok(user) => {
                    let perms = Arc::new(Perms::of(&user));
                    by_name.insert(user.name.clone(), Arc::new(Entry { user, perms }));
                }
                Err(e) => {
                    warn!(entry = %name, error = %e, "an ACL user in the metadata record does not parse; left out")
                }
            }
        }
        let default = Bytes::from_static(b"default");
        by_name.entry(default).or_insert_with(|| {
            let user = User::default_user(requirepass);
            let perms = Arc::new(Perms::of(&user));
            Arc::new(Entry { user, perms })
        });
        Users { by_name }
    }

    /// User `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Entry>> {
        self.by_name.get(name)
    }

    /// Every user, in name order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.by_name.values()
    }
}

/// The node's users and ACL LOG.
pub struct Acl {
    users: ArcSwap<Users>,
    generation: AtomicU64,
    requirepass: Option<String>,
    /// Refusals, newest first (ACL LOG).
    pub log: log::AclLog,
}

impl Acl {
    /// The users of `meta`, for a node with `requirepass`.
    pub fn new(meta: &Metadata, requirepass: Option<String>) -> Acl {
        let users = Users::from_record(meta, requirepass.as_deref());
        Acl {
            users: ArcSwap::from_pointee(users),
            generation: AtomicU64::new(1),
            requirepass,
            log: log::AclLog::default(),
        }
    }

    /// The users now.
    pub fn users(&self) -> Arc<Users> {
        self.users.load_full()
    }

    /// Moves each time the users change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Rebuilds the users from `meta`; returns the names of users that
    /// existed and no longer do (their connections are to be closed).
    pub fn rebuild(&self, meta: &Metadata) -> Vec<Bytes> {
        let new = Users::from_record(meta, self.requirepass.as_deref());
        let old = self.users.swap(Arc::new(new));
        self.generation.fetch_add(1, Ordering::AcqRel);
        let now = self.users.load();
        (old.by_name.keys())
            .filter(|n| now.get(n).is_none())
            .cloned()
            .collect()
    }

    /// Whether connections start authenticated (as the default user):
    /// the default user is on and needs no password.
    pub fn default_needs_no_auth(&self) -> bool {
        let users = self.users.load();
        users
            .get(b"default")
            .is_some_and(|e| e.user.enabled && e.user.nopass)
    }

    /// The compiled permissions of `name` now (nothing allowed if there
    /// is no such user any more).
    pub fn perms_of(&self, name: &[u8]) -> Arc<Perms> {
        match self.users.load().get(name) {
            Some(e) => e.perms.clone(),
            None => Arc::new(Perms::none()),
        }
    }
}

#[cfg(test)]
mod tests;
