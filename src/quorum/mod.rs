//! Quorum decisions as plain state machines: whom a request asks, when it
//! asks more, and when it is done.
//!
//! A quorum write ([`WriteQuorum`]) and a quorum read ([`ReadQuorum`]) are
//! values fed what happens to them (the view's replicas, a replica's
//! answer) and asked, with the time passed in, what to do next: ask these
//! replicas, wait until this instant, or finish with this result. They
//! read no clock, spawn nothing and send nothing, so every interleaving
//! of answers, view changes and deadlines is a table test (`tests/`), not
//! a race between processes. The coordinator (`coordinator/`) is the
//! driver: it computes the replicas from the view, sends what a machine
//! says to send, applies the local copy, and feeds back what arrives.
//!
//! Why the decisions live apart from the I/O: the process tests found the
//! hard cases here one at a time (a killed replica that made every miss
//! wait out the speculation delay, a typed write some replicas refused for
//! the type, a strict quorum that must not count stand-ins), each in a
//! loop that also held the sockets and the clock. Each is now a row.
//!
//! Sloppy and strict counting, and who is a key's replica, are in
//! [`replicas`].

use crate::ring::{NodeList, NodeName};

mod read;
pub mod replicas;
mod write;

#[cfg(test)]
mod tests;

pub use read::{resolve, Answer, Answers, ReadQuorum, ReadStep, Resolved, Timing, Why};
pub use replicas::Replicas;
pub use write::{alone_outcome, Ack, WriteOutcome, WriteQuorum, WriteStep};

/// Read and write quorums for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// Replies a read waits for.
    pub r: usize,
    /// Acknowledgements a write waits for.
    pub w: usize,
    /// Count only the key's home replicas (see [`replicas`]).
    pub strict: bool,
}

/// Whom to send a request to (owned; see [`Asking`]): this node's own copy (`local`, applied or
/// read by the driver at once, its answer fed back before anything else)
/// and the other replicas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// This node is one of them.
    pub local: bool,
    /// The other replicas, in the order to send to.
    pub remote: NodeList,
}

/// Whom a step asks, borrowed from the machine (no copies of the names):
/// this node's own copy (`local`, applied or read by the driver at once)
/// and the other replicas (`remote`, in the order to send to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asking<'a> {
    /// This node is one of them.
    pub local: bool,
    /// The other replicas.
    pub remote: &'a [NodeName],
    /// Send to `remote` only where the link works, and report the others
    /// (a read's [`ReadQuorum::on_unreachable`]).
    pub if_reachable: bool,
}

impl Asking<'_> {
    /// The same, owned.
    pub fn to_targets(self) -> Targets {
        Targets {
            local: self.local,
            remote: self.remote.iter().cloned().collect(),
        }
    }
}

/// Node names compared by pointer first: the names in a request's lists
/// are clones of the ring's, so the string comparison is rarely needed.
pub(crate) fn same(a: &NodeName, b: &NodeName) -> bool {
    // Names of one length usually differ in their last byte (n1, n2...):
    // checked before calling memcmp.
    std::sync::Arc::ptr_eq(a, b)
        || (a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b)
}

/// Takes the ring's copy of this node's name (`me`) when `list` holds it:
/// the names compared afterwards are then the same allocation, and
/// [`same`] answers by pointer instead of comparing bytes.
fn adopt_name(me: &mut NodeName, list: &[NodeName]) {
    if let Some(ring) = list.iter().find(|n| same(n, me)) {
        if !std::sync::Arc::ptr_eq(ring, me) {
            *me = ring.clone();
        }
    }
}

/// Whether `node` is in `list`.
fn listed(list: &[NodeName], node: &NodeName) -> bool {
    list.iter().any(|n| same(n, node))
}
