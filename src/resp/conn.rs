//! One client connection's state, and the registry of every connection.
//!
//! [`ConnState`] is what commands read and change as they are dispatched,
//! in arrival order: authentication, the protocol (RESP2 until `HELLO 3`),
//! quorums, a transaction being queued, watched keys. Only the connection's
//! own task touches it, so it needs no lock.
//!
//! [`ClientInfo`] is the part other connections may look at (CLIENT LIST,
//! CLIENT KILL, INFO's client count): identity, addresses, name, library,
//! and when the last command ran. It is shared through an `Arc` with the
//! node's [`Clients`] registry. The per-command bookkeeping is two relaxed
//! atomic stores; the rest changes only on CLIENT SETNAME and friends,
//! behind a mutex nobody holds for long.
//!
//! A connection is killed by aborting its task: the registry keeps each
//! task's abort handle, so a kill costs the killed connection's loop
//! nothing while it runs, and the socket closes as the task's future is
//! dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::task::AbortHandle;

use crate::coordinator::Quorum;
use crate::resp::codec::Proto;
use crate::store::Version;

/// A transaction being queued (between MULTI and EXEC).
#[derive(Debug, Default)]
pub struct Multi {
    /// The commands queued so far, each with its arguments.
    pub queued: Vec<Vec<Bytes>>,
    /// A command was refused while queuing: EXEC answers EXECABORT.
    pub dirty: bool,
}

/// A key under WATCH: the version a quorum read found, or `None` if the
/// key did not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// The key.
    pub key: Bytes,
    /// What the read found when WATCH ran.
    pub version: Option<Version>,
}

/// Per-connection settings and state, changed by commands in arrival order.
#[derive(Debug)]
pub struct ConnState {
    /// AUTH succeeded (or no password is required).
    pub authed: bool,
    /// The protocol replies are written in.
    pub proto: Proto,
    /// Quorums for this connection's requests.
    pub quorum: Quorum,
    /// QUIT was received: close after the replies so far.
    pub closing: bool,
    /// MULTI was received and EXEC or DISCARD not yet.
    pub multi: Option<Multi>,
    /// Keys under WATCH, checked by the next EXEC (shared with the futures
    /// of the barrier commands that change it: see `cmd::multi`).
    pub watched: crate::resp::cmd::multi::WatchList,
    /// The key of this connection's last write, for WAIT.
    pub last_write: Option<Bytes>,
    /// What other connections may see of this one.
    pub info: Arc<ClientInfo>,
    /// What its user may do, as compiled at ACL generation `perms_gen`.
    pub perms: Arc<crate::acl::Perms>,
    /// The ACL generation `perms` was read at.
    pub perms_gen: u64,
    /// The command being dispatched may read its keys at once, during
    /// dispatch: no command before it on this connection, still in
    /// flight, writes them (see `order::Sequencer::may_read_now`), and it
    /// is not queued in or run by a transaction. Set only around that
    /// dispatch.
    pub read_now: bool,
}

impl ConnState {
    /// The state of a new connection described by `info`.
    pub fn new(info: Arc<ClientInfo>, acl: &crate::acl::Acl, quorum: Quorum) -> Self {
        ConnState {
            authed: acl.default_needs_no_auth(),
            perms: acl.perms_of(b"default"),
            perms_gen: acl.generation(),
            proto: Proto::Resp2,
            quorum,
            closing: false,
            multi: None,
            watched: Default::default(),
            last_write: None,
            info,
            read_now: false,
        }
    }

    /// Runs as user `name` from now on.
    pub fn set_user(&mut self, acl: &crate::acl::Acl, name: Bytes) {
        self.perms_gen = acl.generation();
        self.perms = acl.perms_of(&name);
        self.info.details().user = name;
    }

    /// The permissions of the connection's user, re-read if the users
    /// changed since they were last read.
    pub fn current_perms(&mut self, acl: &crate::acl::Acl) -> &crate::acl::Perms {
        let now = acl.generation();
        if now != self.perms_gen {
            let name = self.info.details().user.clone();
            self.perms = acl.perms_of(&name);
            self.perms_gen = now;
        }
        &self.perms
    }

    /// The connection's id (CLIENT ID).
    pub fn id(&self) -> u64 {
        self.info.id
    }
}

/// Settings a client changes with CLIENT and HELLO.
#[derive(Debug, Default, Clone)]
pub struct Details {
    /// CLIENT SETNAME.
    pub name: Option<Bytes>,
    /// CLIENT SETINFO LIB-NAME.
    pub lib_name: Option<Bytes>,
    /// CLIENT SETINFO LIB-VER.
    pub lib_ver: Option<Bytes>,
    /// CLIENT NO-EVICT (accepted; ringkv never evicts clients).
    pub no_evict: bool,
    /// CLIENT NO-TOUCH (accepted; ringkv keeps no access times).
    pub no_touch: bool,
    /// The protocol, for CLIENT LIST.
    pub resp: u8,
    /// Commands queued in a transaction, or -1 outside one.
    pub multi: i64,
    /// The ACL user the connection runs as.
    pub user: Bytes,
}

/// What other connections may see of one connection.
#[derive(Debug)]
pub struct ClientInfo {
    /// CLIENT ID: unique for the node's life, starting at 1.
    pub id: u64,
    /// The client's address.
    pub addr: SocketAddr,
    /// The address it connected to.
    pub laddr: SocketAddr,
    /// The socket's file descriptor, as CLIENT LIST shows it.
    pub fd: i64,
    /// When the connection was accepted.
    pub created: Instant,
    /// Milliseconds after `created` at which the last command started.
    last_at_ms: AtomicU64,
    /// The table index of the last command, plus one (0: none yet).
    last_cmd: AtomicUsize,
    details: Mutex<Details>,
}

impl ClientInfo {
    /// A new connection's description.
    pub fn new(id: u64, addr: SocketAddr, laddr: SocketAddr, fd: i64) -> Self {
        ClientInfo {
            id,
            addr,
            laddr,
            fd,
            created: crate::clock::instant(),
            last_at_ms: AtomicU64::new(0),
            last_cmd: AtomicUsize::new(0),
            details: Mutex::new(Details {
                resp: 2,
                multi: -1,
                user: Bytes::from_static(b"default"),
                ..Details::default()
            }),
        }
    }

    /// Records that the command at table index `cmd` started at `now`.
    pub fn touch(&self, cmd: usize, now: Instant) {
        let ms = now.saturating_duration_since(self.created).as_millis() as u64;
        self.last_at_ms.store(ms, Ordering::Relaxed);
        self.last_cmd.store(cmd + 1, Ordering::Relaxed);
    }

    /// The table index of the last command started, if any.
    pub fn last_cmd(&self) -> Option<usize> {
        self.last_cmd.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Seconds since the connection was accepted, and since its last command.
    pub fn age_and_idle(&self, now: Instant) -> (u64, u64) {
        let age = now.saturating_duration_since(self.created);
        let last = self.last_at_ms.load(Ordering::Relaxed);
        let idle_ms = (age.as_millis() as u64).saturating_sub(last);
        (age.as_secs(), idle_ms / 1000)
    }

    /// The settings the client changed, locked briefly.
    pub fn details(&self) -> MutexGuard<'_, Details> {
        // Every update leaves the details whole: a poisoned lock is fine.
        self.details.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Registered {
    info: Arc<ClientInfo>,
    abort: Option<AbortHandle>,
}

/// Every client connection of a node, by id.
#[derive(Default)]
pub struct Clients {
    next_id: AtomicU64,
    by_id: Mutex<BTreeMap<u64, Registered>>,
}

impl Clients {
    /// A fresh connection id (1, 2, ...).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<u64, Registered>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection; it stays listed until [`Clients::remove`].
    pub fn add(&self, info: Arc<ClientInfo>) {
        let id = info.id;
        self.map().insert(id, Registered { info, abort: None });
    }

    /// Remembers how to kill connection `id` (its task's abort handle).
    pub fn set_abort(&self, id: u64, abort: AbortHandle) {
        if let Some(r) = self.map().get_mut(&id) {
            r.abort = Some(abort);
        }
    }

    /// Forgets connection `id` (it ended).
    pub fn remove(&self, id: u64) {
        self.map().remove(&id);
    }

    /// How many connections there are.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every connection, oldest first.
    pub fn list(&self) -> Vec<Arc<ClientInfo>> {
        self.map().values().map(|r| r.info.clone()).collect()
    }

    /// Kills the connections `pick` chooses (never `skip`): their tasks are
    /// aborted and their sockets closed. Returns how many.
    pub fn kill(&self, skip: Option<u64>, mut pick: impl FnMut(&ClientInfo) -> bool) -> usize {
        let mut map = self.map();
        let doomed: Vec<u64> = map
            .values()
            .filter(|r| Some(r.info.id) != skip && pick(&r.info))
            .map(|r| r.info.id)
            .collect();
        for id in &doomed {
            if let Some(r) = map.remove(id) {
                if let Some(abort) = r.abort {
                    abort.abort();
                }
            }
        }
        doomed.len()
    }
}

/// Removes a connection from the registry when its task ends, however it
/// ends (returned, failed, or aborted by CLIENT KILL).
pub struct Deregister {
    /// The registry.
    pub clients: Arc<Clients>,
    /// The connection's id.
    pub id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        self.clients.remove(self.id);
    }
}
