//! Fault injection for the scenario runner: splits, drops, delays and a
//! wrong clock.
//!
//! A node started with fault injection on keeps a [`Faults`] table that the
//! runner fills through the admin port. The transport consults it for every
//! node-to-node message, outgoing and incoming, so the faults are real
//! network faults as far as the rest of the node is concerned. Client
//! traffic never passes this way.
//!
//! - A **split** is an island: no message passes between a node inside it
//!   and a node outside it. Both ends check, so a split holds even while
//!   only one side has been told about it.
//! - A **drop** rule discards the next COUNT messages to this node
//!   (incoming), from this node (outgoing), or in either direction.
//! - A **delay** rule holds each of the next COUNT outgoing messages for a
//!   number of milliseconds.
//! - A **disk** fault fails the next COUNT commit-log writes or fsyncs.
//! - A **clock** offset sets the node's wall clock wrong by a number of
//!   milliseconds (see `crate::clock::set_offset_micros`).
//!
//! Deliberately left out: probabilistic loss and reordering without delay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which messages a drop rule counts, seen from the node that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Messages arriving at this node.
    Incoming,
    /// Messages leaving this node.
    Outgoing,
    /// Both.
    Any,
}

/// A command from the runner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum FaultCommand {
    /// Add (or replace) the island `name`.
    Split {
        /// The split's name.
        name: String,
        /// The nodes on the island.
        nodes: Vec<String>,
    },
    /// Remove the island `name`.
    Join {
        /// The split's name.
        name: String,
    },
    /// Drop the next `count` messages in `direction`, optionally only those
    /// exchanged with `peer`.
    Drop {
        /// How many.
        count: u64,
        /// Which way.
        direction: Direction,
        /// Only messages to or from this peer, if set.
        peer: Option<String>,
    },
    /// Hold each of the next `count` outgoing messages for `ms`.
    Delay {
        /// How many.
        count: u64,
        /// For how long.
        ms: u64,
    },
    /// Set this node's wall clock `offset_ms` off the true time (negative:
    /// behind), as a misconfigured clock would be: write timestamps,
    /// expiry and the clocks announced to peers all follow it. 0 puts it
    /// right.
    Clock {
        /// Milliseconds added to the wall clock.
        offset_ms: i64,
    },
    /// Fail the node's next `count` commit-log operations `fail` (`write`
    /// or `fsync`) with `errno` (`ENOSPC` or `EIO`), as a full or broken
    /// disk would (handled by the admin port, which owns the log).
    Disk {
        /// Which operation.
        fail: crate::log::DiskOp,
        /// How many.
        count: u64,
        /// The error.
        errno: crate::log::DiskErrno,
    },
    /// Remove every fault (the clock offset and disk faults included).
    Clear,
}

/// What to do with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Pass,
    /// Discard it.
    Drop,
    /// Send it after this long.
    Delay(Duration),
}

#[derive(Debug)]
struct DropRule {
    remaining: u64,
    direction: Direction,
    peer: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    splits: BTreeMap<String, BTreeSet<String>>,
    drops: Vec<DropRule>,
    delays: Vec<(u64, u64)>,
}

/// The fault table of one node.
#[derive(Debug)]
pub struct Faults {
    me: String,
    state: Mutex<State>,
}

impl Faults {
    /// An empty table for node `me`.
    pub fn new(me: impl Into<String>) -> Self {
        Faults {
            me: me.into(),
            state: Mutex::new(State::default()),
        }
    }

    /// Applies a runner command.
    pub fn apply(&self, cmd: FaultCommand) {
        let mut s = self.lock();
        match cmd {
            FaultCommand::Split { name, nodes } => {
                s.splits.insert(name, nodes.into_iter().collect());
            }
            FaultCommand::Join { name } => {
                s.splits.remove(&name);
            }
            FaultCommand::Drop {
                count,
                direction,
                peer,
            } => s.drops.push(DropRule {
                remaining: count,
                direction,
                peer,
            }),
            FaultCommand::Delay { count, ms } => s.delays.push((count, ms)),
            FaultCommand::Clock { offset_ms } => {
                crate::clock::set_offset_micros(offset_ms.saturating_mul(1000));
            }
            // The commit log's: see `admin::fault`.
            FaultCommand::Disk { .. } => {}
            FaultCommand::Clear => {
                *s = State::default();
                crate::clock::set_offset_micros(0);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the table invalid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The verdict for a message from this node to `to`.
    pub fn outgoing(&self, to: &str) -> Verdict {
        let mut s = self.lock();
        if separated(&s.splits, &self.me, to) || take_drop(&mut s.drops, Direction::Outgoing, to) {
            return Verdict::Drop;
        }
        if let Some(rule) = s.delays.first_mut() {
            let ms = rule.1;
            rule.0 -= 1;
            if rule.0 == 0 {
                s.delays.remove(0);
            }
            return Verdict::Delay(Duration::from_millis(ms));
        }
        Verdict::Pass
    }

    /// Whether a split stands between this node and `peer` (drop and delay
    /// rules aside: for the clocks a socket write opens with, which must
    /// not cross a split but must not use up a rule's count either).
    pub fn split_from(&self, peer: &str) -> bool {
        separated(&self.lock().splits, &self.me, peer)
    }

    /// The verdict for a message to this node from `from`.
    pub fn incoming(&self, from: &str) -> Verdict {
        let mut s = self.lock();
        if separated(&s.splits, &self.me, from)
            || take_drop(&mut s.drops, Direction::Incoming, from)
        {
            return Verdict::Drop;
        }
        Verdict::Pass
    }
}

fn separated(splits: &BTreeMap<String, BTreeSet<String>>, a: &str, b: &str) -> bool {
    splits
        .values()
        .any(|island| island.contains(a) != island.contains(b))
}

fn take_drop(rules: &mut Vec<DropRule>, dir: Direction, peer: &str) -> bool {
    let hit = rules.iter().position(|r| {
        (r.direction == dir || r.direction == Direction::Any)
            && r.peer.as_deref().is_none_or(|p| p == peer)
    });
    let Some(i) = hit else { return false };
    rules[i].remaining -= 1;
    if rules[i].remaining == 0 {
        rules.remove(i);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str, nodes: &[&str]) -> FaultCommand {
        FaultCommand::Split {
            name: name.into(),
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_split_is_an_island_both_ways_until_joined() {
        let f = Faults::new("a");
        f.apply(split("p", &["a", "b"]));
        assert_eq!(f.outgoing("b"), Verdict::Pass);
        assert_eq!(f.outgoing("c"), Verdict::Drop);
        assert_eq!(f.incoming("c"), Verdict::Drop);
        let outside = Faults::new("c");
        outside.apply(split("p", &["a", "b"]));
        assert_eq!(outside.outgoing("d"), Verdict::Pass);
        assert_eq!(outside.outgoing("a"), Verdict::Drop);
        f.apply(FaultCommand::Join { name: "p".into() });
        assert_eq!(f.outgoing("c"), Verdict::Pass);
    }

    #[test]
    fn drops_count_down_by_direction_and_peer() {
        let f = Faults::new("a");
        f.apply(FaultCommand::Drop {
            count: 2,
            direction: Direction::Incoming,
            peer: Some("b".into()),
        });
        assert_eq!(f.incoming("c"), Verdict::Pass);
        assert_eq!(f.outgoing("b"), Verdict::Pass);
        assert_eq!(f.incoming("b"), Verdict::Drop);
        assert_eq!(f.incoming("b"), Verdict::Drop);
        assert_eq!(f.incoming("b"), Verdict::Pass);
    }

    #[test]
    fn delays_hold_the_next_messages_then_stop() {
        let f = Faults::new("a");
        f.apply(FaultCommand::Delay { count: 1, ms: 30 });
        assert_eq!(f.outgoing("b"), Verdict::Delay(Duration::from_millis(30)));
        assert_eq!(f.outgoing("b"), Verdict::Pass);
        f.apply(FaultCommand::Delay { count: 5, ms: 1 });
        f.apply(FaultCommand::Clear);
        assert_eq!(f.outgoing("b"), Verdict::Pass);
    }
}
