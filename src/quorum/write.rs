//! A quorum write: sent to every replica at once, done after W
//! acknowledgements.
//!
//! The machine is fed the replicas of each new view ([`WriteQuorum::on_view`],
//! which answers whom to send the write to: only replicas not yet sent
//! it), each replica's answer ([`WriteQuorum::on_ack`], this node's own
//! copy included), and is asked what now ([`WriteQuorum::next`], with the
//! time). The rules, in the order `next` applies them:
//!
//! 1. A typed write that some replicas applied and others refused for the
//!    key's type (their copies disagree on it, after a partition) took
//!    effect, and the merge will show it: the refusers are sent it as a
//!    plain write ([`WriteStep::Force`]), once each.
//! 2. W acknowledgements (capped by the replicas listed, when sloppy):
//!    done.
//! 3. Every replica asked answered, none applied it, and some refused it
//!    for the type: `WRONGTYPE`.
//! 4. Too many replicas refused it (a full disk, `maxmemory`) for the rest
//!    to make W: the refusal, at once rather than at the deadline.
//! 5. Strict, and fewer home replicas up than W; or the deadline passed:
//!    `UNAVAILABLE` (or the refusal or `WRONGTYPE` heard, if any).
//! 6. Else wait, until the deadline.

use std::time::Instant;

use super::replicas::{needed, unavailable, Replicas};
use super::{listed, same, Asking, Quorum, Targets};
use crate::error::{Error, Result};
use crate::ring::{NodeList, NodeName};
use crate::store::Version;

/// What a successful write learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Some acknowledging replica held a live value before the write.
    pub was_live: bool,
    /// The version the write was stamped with.
    pub version: Version,
    /// A read-modify-write only: some acknowledging replica held a version
    /// newer than the one read (another write came in between), or
    /// already held one newer than this write (which then lost there).
    pub conflict: bool,
    /// A typed write only: for each checked element, whether some
    /// acknowledging replica held it live before.
    pub present: crate::values::Present,
}

impl WriteOutcome {
    /// A write stamped `version` that no replica has answered yet.
    fn none(version: Version) -> WriteOutcome {
        WriteOutcome {
            was_live: false,
            version,
            conflict: false,
            present: crate::values::Present::new(),
        }
    }

    fn absorb(&mut self, was_live: bool, conflict: bool, present: crate::values::Present) {
        self.was_live |= was_live;
        self.conflict |= conflict;
        // The first answer's flags are taken as they are, not copied.
        if self.present.is_empty() {
            self.present = present;
            return;
        }
        if self.present.len() < present.len() {
            self.present.resize(present.len(), false);
        }
        for (mine, theirs) in self.present.iter_mut().zip(present) {
            *mine |= theirs;
        }
    }
}

/// A replica's answer to a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    /// It holds the write now.
    Done {
        /// It held a live value before.
        was_live: bool,
        /// A read-modify-write: it held something newer than the version
        /// read.
        conflict: bool,
        /// A typed write: which checked elements it held live before.
        present: crate::values::Present,
    },
    /// A typed write it refused: the key holds another type there.
    WrongType,
    /// It refused the write, for this reason (the client's error text,
    /// naming the replica).
    Refused(String),
}

impl Ack {
    /// A plain acknowledgement.
    pub fn done(was_live: bool) -> Ack {
        Ack::Done {
            was_live,
            conflict: false,
            present: crate::values::Present::new(),
        }
    }
}

/// What a write does next.
#[derive(Debug)]
pub enum WriteStep {
    /// Send the write as a plain `Put` to these replicas (this node's own
    /// copy, if listed, applied as a plain write), then ask again.
    Force(Targets),
    /// Wait for an answer, a view change, or this instant.
    Wait(Instant),
    /// Done: the outcome, or why it failed.
    Done(Result<WriteOutcome>),
    /// The deadline passed (or strict replicas are too few): fail with
    /// `error`; `unanswered` replicas never acknowledged.
    TimedOut {
        /// The client's error.
        error: Error,
        /// Replicas asked that did not acknowledge.
        unanswered: usize,
    },
}

/// One quorum write.
#[derive(Debug)]
pub struct WriteQuorum {
    me: NodeName,
    q: Quorum,
    deadline: Instant,
    /// The view the replicas were last computed from.
    epoch: Option<u64>,
    replicas: Replicas,
    asked: NodeList,
    acked: NodeList,
    /// Replicas that refused a typed write for the key's type, and
    /// whether each was since sent it as a plain write.
    wrong: Vec<(NodeName, bool)>,
    /// Replicas that refused the write, and the last reason heard.
    refused: NodeList,
    refusal: Option<String>,
    outcome: WriteOutcome,
}

impl WriteQuorum {
    /// A write stamped `version`, coordinated by `me`, failing at `deadline`.
    pub fn new(me: NodeName, q: Quorum, version: Version, deadline: Instant) -> WriteQuorum {
        WriteQuorum {
            me,
            q,
            deadline,
            epoch: None,
            replicas: Replicas::default(),
            asked: NodeList::new(),
            acked: NodeList::new(),
            wrong: Vec::new(),
            refused: NodeList::new(),
            refusal: None,
            outcome: WriteOutcome::none(version),
        }
    }

    /// Whether the view of `epoch` is one the write has not seen yet (so
    /// the driver computes its replicas only then, not on every answer).
    pub fn is_new_view(&self, epoch: u64) -> bool {
        self.epoch != Some(epoch)
    }

    /// The write's first view.
    pub fn is_first_view(&self) -> bool {
        self.epoch.is_none()
    }

    /// The replicas of the view of `epoch`. Returns those not yet sent the
    /// write, which the driver sends it to (and, when `local`, applies
    /// this node's copy at once and reports it with [`WriteQuorum::on_ack`]).
    pub fn on_view(&mut self, epoch: u64, replicas: Replicas) -> Asking<'_> {
        self.epoch = Some(epoch);
        super::adopt_name(&mut self.me, &replicas.list);
        let from = self.asked.len();
        let mut local = false;
        for node in &replicas.list {
            if listed(&self.asked, node) {
                continue;
            }
            if same(node, &self.me) {
                local = true;
            } else {
                self.asked.push(node.clone());
            }
        }
        // This node goes last, after the ones to send to.
        if local {
            self.asked.push(self.me.clone());
        }
        self.replicas = replicas;
        let end = self.asked.len() - usize::from(local);
        Asking {
            local,
            remote: &self.asked[from..end],
            if_reachable: false,
        }
    }

    /// This node's name, as the write's lists hold it (the driver reports
    /// this node's acknowledgement under it).
    pub fn me(&self) -> &NodeName {
        &self.me
    }

    /// The answer of replica `from` (this node's own included). Returns
    /// whether it was a new acknowledgement (the driver counts those).
    pub fn on_ack(&mut self, from: NodeName, ack: Ack) -> bool {
        match ack {
            Ack::Done {
                was_live,
                conflict,
                present,
            } => {
                if listed(&self.acked, &from) {
                    return false;
                }
                self.outcome.absorb(was_live, conflict, present);
                self.acked.push(from);
                true
            }
            Ack::WrongType => {
                if !self.wrong.iter().any(|(n, _)| same(n, &from)) {
                    self.wrong.push((from, false));
                }
                false
            }
            Ack::Refused(why) => {
                self.refusal = Some(why);
                if !listed(&self.refused, &from) {
                    self.refused.push(from);
                }
                false
            }
        }
    }

    /// How many more acknowledgements the write needs for its quorum (0:
    /// it has it). A driver whose own copy is still being logged waits for
    /// that only when at most one is missing: before that, its answer alone
    /// cannot finish the write.
    pub fn short_by(&self) -> usize {
        needed(self.q.w, self.replicas.list.len(), self.q.strict).saturating_sub(self.acked.len())
    }

    /// What to do now, at `now` (see the module doc for the rules).
    pub fn next(&mut self, now: Instant) -> WriteStep {
        if !self.acked.is_empty() && self.wrong.iter().any(|(_, forced)| !forced) {
            let mut targets = Targets::default();
            for (node, forced) in self.wrong.iter_mut().filter(|(_, f)| !*f) {
                *forced = true;
                if same(node, &self.me) {
                    targets.local = true;
                } else {
                    targets.remote.push(node.clone());
                }
            }
            return WriteStep::Force(targets);
        }
        let listed = self.replicas.list.len();
        let needed = needed(self.q.w, listed, self.q.strict);
        if self.acked.len() >= needed {
            return WriteStep::Done(Ok(self.outcome.clone()));
        }
        let answered = self.acked.len() + self.wrong.len();
        if self.acked.is_empty() && !self.wrong.is_empty() && answered >= self.asked.len() {
            return WriteStep::Done(Err(Error::WrongType));
        }
        if self.asked.len().saturating_sub(self.refused.len()) < needed && self.wrong.is_empty() {
            if let Some(why) = self.refusal.take() {
                return WriteStep::Done(Err(refusal_error(why)));
            }
        }
        let short = self.q.strict && listed < needed;
        if !short && now < self.deadline {
            return WriteStep::Wait(self.deadline);
        }
        let error = if self.acked.is_empty() && !self.wrong.is_empty() {
            Error::WrongType
        } else if let Some(why) = self.refusal.take() {
            refusal_error(why)
        } else {
            unavailable(
                "write",
                self.q.strict,
                needed,
                self.acked.len(),
                listed,
                self.replicas.home,
            )
        };
        WriteStep::TimedOut {
            error,
            unanswered: self.asked.len().saturating_sub(self.acked.len()),
        }
    }
}

/// The error a write fails with after refusals: a refusal that starts with
/// `MISCONF` (a replica's commit log cannot be written) keeps Redis's error
/// code.
/// What a sloppy write concludes whose one listed replica is this node,
/// from this node's `ack`: what [`WriteQuorum`] decides with that one
/// replica (W capped at one), without its lists. For a coordinator that
/// is the only node up.
pub fn alone_outcome(version: Version, ack: Ack) -> Result<WriteOutcome> {
    match ack {
        Ack::Done {
            was_live,
            conflict,
            present,
        } => {
            let mut outcome = WriteOutcome::none(version);
            outcome.absorb(was_live, conflict, present);
            Ok(outcome)
        }
        Ack::WrongType => Err(Error::WrongType),
        Ack::Refused(why) => Err(refusal_error(why)),
    }
}

pub(crate) fn refusal_error(why: String) -> Error {
    match why.strip_prefix(crate::error::MISCONF_PREFIX) {
        Some(rest) => Error::Misconf(rest.to_string()),
        None => Error::invalid(why),
    }
}
