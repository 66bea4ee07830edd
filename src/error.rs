//! The one error type of ringkv.
//!
//! Every fallible function in the crate returns [`Result`]. Variants are
//! chosen for what the *caller* can do about them, not for where they came
//! from: a client sees `Unavailable` and may retry, sees `InvalidInput` and
//! must fix its request. Each variant's doc says whether state may have
//! changed when it is returned.

use std::io;

/// The crate-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ringkv.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Too few replicas answered before the deadline. For a write, the value
    /// may have reached `got` replicas (state may have changed there) and
    /// will spread further through hand-off; for a read nothing changed.
    #[error("{op} reached only {got} of the {needed} replicas needed before the deadline")]
    Unavailable {
        /// "read" or "write".
        op: &'static str,
        /// Replicas needed (the effective quorum).
        needed: usize,
        /// Replicas that answered in time.
        got: usize,
    },
    /// Under strict quorums, too few of the key's home replicas (its first
    /// N nodes on the ring of every node known, up or down) answered: no
    /// other node counts. For a write, the value may have reached `got`
    /// home replicas.
    #[error("{op} reached only {got} of the {needed} home replicas needed; {up} of the key's {home} home replicas are up (strict quorums count no other node)")]
    UnavailableStrict {
        /// "read" or "write".
        op: &'static str,
        /// Home replicas needed (R or W).
        needed: usize,
        /// Home replicas that answered.
        got: usize,
        /// Home replicas this node sees up (and, for a write, taking
        /// writes).
        up: usize,
        /// Home replicas of the key (N, or fewer nodes known).
        home: usize,
    },
    /// A cluster-wide change (FLUSHALL) is durable on this node and on
    /// `reached` of the `of` nodes up, but the others did not confirm it
    /// before the deadline. State changed: they apply it when it reaches
    /// them (heartbeats carry it).
    #[error("{op} reached {reached} of the {of} nodes up before the deadline; the others apply it when they are reached")]
    Partial {
        /// What was being done ("flushall").
        op: &'static str,
        /// Nodes that confirmed, this one included.
        reached: usize,
        /// Nodes up.
        of: usize,
    },
    /// An operation did not finish in time and nothing more specific is
    /// known. State may have changed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The request itself is wrong (bad argument, over a limit, unknown
    /// command). Nothing changed.
    #[error("{0}")]
    InvalidInput(String),
    /// A configuration key has a bad value. Nothing started.
    #[error("config: {key}: {reason}")]
    Config {
        /// The setting's name as it is written in the TOML file.
        key: String,
        /// Why the value was refused.
        reason: String,
    },
    /// A peer broke the node-to-node protocol (bad frame, wrong version,
    /// failed handshake). The connection is closed; nothing was stored.
    #[error("peer protocol: {0}")]
    Protocol(String),
    /// A write carried a timestamp too far ahead of this node's clock.
    /// Nothing changed.
    #[error("timestamp {got_micros}us is {ahead_micros}us ahead of the local clock (limit {limit_micros}us)")]
    ClockSkew {
        /// The offending timestamp's physical part (microseconds since the epoch).
        got_micros: u64,
        /// How far ahead of the local clock it is.
        ahead_micros: u64,
        /// The configured maximum.
        limit_micros: u64,
    },
    /// Stored data could not be read back (corrupt or truncated). What was
    /// valid has been kept.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The key holds another type than the command works on (Redis's
    /// WRONGTYPE). Nothing changed.
    #[error("Operation against a key holding the wrong kind of value")]
    WrongType,
    /// The commit log cannot be written (a full disk, an I/O error): the
    /// write was refused, and nothing acknowledged it. Redis's MISCONF.
    #[error("commit log cannot be written: {0}")]
    Misconf(String),
    /// Past `maxmemory` (Redis's OOM under `noeviction`): the write was
    /// refused before it changed anything.
    #[error("command not allowed when used memory > 'maxmemory'.")]
    Oom,
    /// The node is shutting down; the request was not started.
    #[error("node is shutting down")]
    Shutdown,
    /// An I/O error from the operating system. State may have changed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

/// Starts a replica's refusal of a write (`PutResult::Refused`) because
/// its commit log cannot be written, so the coordinator answers the
/// client Redis's `MISCONF`.
pub const MISCONF_PREFIX: &str = "MISCONF ";

/// What an increment's coordinator answers (`IncrResult::Invalid`) when
/// every node up is past `maxmemory`: the client gets Redis's OOM.
pub const OOM_REFUSAL: &str = "OOM";

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
