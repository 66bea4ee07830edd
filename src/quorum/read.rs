//! A quorum read: asks R replicas, more when they are slow, one more to
//! confirm a miss, and is done with R answers.
//!
//! The machine is fed the replicas of each new view
//! ([`ReadQuorum::on_view`]), each answer ([`ReadQuorum::on_answer`],
//! this node's own included) and each replica it said to ask only if its
//! link works whose link did not ([`ReadQuorum::on_unreachable`]), and is
//! asked what now ([`ReadQuorum::next`], with the time). Its rules:
//!
//! - **Whom it asks.** This node first when it is a replica (that answer is
//!   free), then only as many others as make R: those whose peer link
//!   works first (the driver sends to them only if it does, and reports
//!   those whose link is broken, in one lookup per replica), the rest only
//!   if those do not make R. Which replicas
//!   come first rotates with the key, so the reads a coordinator forwards
//!   spread over all the replicas. A new view asks the replicas it adds,
//!   as many as are still needed.
//! - **Speculation.** If R answers have not come by the speculation
//!   instant, it asks every replica left.
//! - **Confirming a miss.** When the first R answers all say "no such key"
//!   (a tombstone is an answer, not a miss), it asks one more replica
//!   whose link works, and waits for it until the confirmation instant at
//!   most: right after a ring change, anti-entropy may not yet have filled
//!   the replicas asked first. A replica whose link broke is not asked for
//!   this, so a node just killed does not slow every miss until the
//!   failure detector catches up.
//! - **Failing.** Strict, and fewer home replicas up than R: at once. R
//!   answers not in by the deadline: `UNAVAILABLE`, naming how many came.
//!
//! [`resolve`] merges the answers of a whole-key read through `values`
//! and says which replicas answered something else (read repair).

use std::time::{Duration, Instant};

use super::replicas::{needed, unavailable, Replicas};
use super::{adopt_name, listed, same, Asking, Quorum};
use crate::error::Error;
use crate::ring::{NodeList, NodeName};
use crate::store::Entry;
use crate::values::Part;

/// What a replica answers a read: a whole entry, or a part of one.
pub trait Answer {
    /// Whether it is "no such key" (a tombstone is not a miss).
    fn is_miss(&self) -> bool;
}

impl Answer for Option<Entry> {
    fn is_miss(&self) -> bool {
        self.is_none()
    }
}

impl Answer for Option<Box<Part>> {
    fn is_miss(&self) -> bool {
        self.is_none()
    }
}

/// The answers a read gathered, inline for the usual few.
pub type Answers<A> = smallvec::SmallVec<[(NodeName, A); 4]>;

/// Why a read asks more replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its first view.
    First,
    /// The view changed: replicas it adds.
    ViewChanged,
    /// The speculation instant passed: every replica left.
    Speculate,
    /// The first R answers were misses: one more reachable replica.
    ConfirmMiss,
}

/// What a read does next.
#[derive(Debug)]
pub enum ReadStep {
    /// Send the read to [`ReadQuorum::asking`]'s remote replicas, read
    /// this node's copy if it says so and report it, and ask again.
    Ask(Why),
    /// Wait for an answer, a view change, or this instant.
    Wait(Instant),
    /// Done: the answers are [`ReadQuorum::answers`].
    Done,
    /// Failed at once (strict, too few home replicas up).
    Failed(Error),
    /// The deadline passed: fail with `error`; `unanswered` replicas
    /// asked never answered.
    TimedOut {
        /// The client's error.
        error: Error,
        /// Replicas asked that did not answer.
        unanswered: usize,
    },
}

/// How much of the list a pass of asking takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// Enough to make the quorum: replicas not known to be unreachable
    /// first.
    Enough,
    /// Every replica on the list.
    All,
    /// Enough to make the quorum, from replicas not known to be
    /// unreachable, sent to only if they are not.
    Reachable,
}

/// When a read asks more, and for how long it waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// It fails at this instant.
    pub deadline: Instant,
    /// It asks every replica at this instant (`None`: at once).
    pub speculate_at: Option<Instant>,
    /// How long it waits for a replica confirming a miss (`None`: it does
    /// not confirm misses).
    pub confirm_wait: Option<Duration>,
}

/// One quorum read, whose answers are `A`.
#[derive(Debug)]
pub struct ReadQuorum<A> {
    me: NodeName,
    q: Quorum,
    /// Where the rotation of the replica list starts (from the key).
    first: usize,
    timing: Timing,
    confirm_by: Option<Instant>,
    epoch: Option<u64>,
    replicas: Replicas,
    /// Why the list is looked at again on the next step, if it is.
    rescan: Option<Why>,
    /// Why the last ask asked (asked again after a broken link).
    last: Why,
    /// Replicas found unreachable (asked again only if the others do not
    /// make the quorum).
    unreachable: NodeList,
    /// Whether this read tried confirming a miss (once at most).
    confirm_tried: bool,
    asked: NodeList,
    /// Where in `asked` the last ask began, and whether it included this
    /// node (first, then).
    asking: (usize, bool),
    /// Whether the last ask's remote replicas are to be sent to only if
    /// their link works.
    if_reachable: bool,
    answers: Answers<A>,
}

impl<A: Answer> ReadQuorum<A> {
    /// A read coordinated by `me`; `first` picks which replicas it asks
    /// first (any byte of the key's hash).
    pub fn new(me: NodeName, q: Quorum, first: u8, timing: Timing) -> ReadQuorum<A> {
        ReadQuorum {
            me,
            q,
            first: usize::from(first),
            timing,
            confirm_by: None,
            epoch: None,
            replicas: Replicas::default(),
            rescan: None,
            last: Why::First,
            unreachable: NodeList::new(),
            confirm_tried: false,
            asked: NodeList::new(),
            asking: (0, false),
            if_reachable: false,
            answers: Answers::new(),
        }
    }

    /// This node's name, as the read's lists hold it (the driver reports
    /// this node's answer under it).
    pub fn me(&self) -> &NodeName {
        &self.me
    }

    /// Whom the last [`ReadStep::Ask`] asks.
    pub fn asking(&self) -> Asking<'_> {
        let (from, local) = self.asking;
        Asking {
            local,
            remote: &self.asked[from + usize::from(local)..],
            if_reachable: self.if_reachable,
        }
    }

    /// Replica `node`, which the last ask said to send to only if its
    /// link works, was not sent the read: its link is broken. The next
    /// step asks another in its place (or it after all, if no other
    /// makes the quorum; never to confirm a miss).
    pub fn on_unreachable(&mut self, node: &NodeName) {
        if let Some(i) = self.asked.iter().position(|n| same(n, node)) {
            let node = self.asked.remove(i);
            if !listed(&self.unreachable, &node) {
                self.unreachable.push(node);
            }
        }
        self.rescan = Some(self.last);
    }

    /// The answers gathered (all of them once [`ReadStep::Done`]).
    pub fn answers(&mut self) -> &mut Answers<A> {
        &mut self.answers
    }

    /// Whether it counts home replicas only.
    pub fn strict(&self) -> bool {
        self.q.strict
    }

    /// Whether the view of `epoch` is one the read has not seen yet.
    pub fn is_new_view(&self, epoch: u64) -> bool {
        self.epoch != Some(epoch)
    }

    /// The replicas of the view of `epoch`; the next step asks whom the
    /// read still needs among them.
    pub fn on_view(&mut self, epoch: u64, replicas: Replicas) {
        adopt_name(&mut self.me, &replicas.list);
        self.rescan = Some(match self.epoch {
            None => Why::First,
            Some(_) => Why::ViewChanged,
        });
        self.epoch = Some(epoch);
        self.replicas = replicas;
    }

    /// The answer of replica `from` (this node's own included). Returns
    /// whether it was the first from that replica (a second is ignored).
    pub fn on_answer(&mut self, from: NodeName, answer: A) -> bool {
        if self.answers.iter().any(|(n, _)| same(n, &from)) {
            return false;
        }
        self.answers.push((from, answer));
        true
    }

    /// Answers this read waits for now.
    fn needed(&self) -> usize {
        let (r, listed) = (self.q.r, self.replicas.list.len());
        let confirming = self.confirm_by.is_some();
        match self.q.strict {
            // A confirmation asks one more home replica if there is one.
            true if confirming => (r + 1).min(listed).max(r),
            strict => needed(r + usize::from(confirming), listed, strict),
        }
    }

    /// What to do now, at `now` (see the module doc).
    pub fn next(&mut self, now: Instant) -> ReadStep {
        loop {
            let needed = self.needed();
            let listed = self.replicas.list.len();
            if self.q.strict && listed < needed {
                let got = self.answers.len();
                let home = self.replicas.home;
                return ReadStep::Failed(unavailable("read", true, needed, got, listed, home));
            }
            if let Some(why) = self.rescan.take() {
                let ask = match why {
                    Why::ConfirmMiss => Ask::Reachable,
                    _ if self.timing.speculate_at.is_none() => Ask::All,
                    _ => Ask::Enough,
                };
                self.last = why;
                if self.ask(needed, ask) {
                    return ReadStep::Ask(why);
                }
                if why == Why::ConfirmMiss {
                    // No other replica with a working link to confirm with.
                    self.confirm_by = None;
                    continue;
                }
            }
            if self.answers.len() >= needed {
                let miss = self.answers.iter().all(|(_, a)| a.is_miss());
                if let Some(wait) = self.timing.confirm_wait {
                    if miss && !self.confirm_tried {
                        self.confirm_tried = true;
                        self.confirm_by = Some(now + wait);
                        self.rescan = Some(Why::ConfirmMiss);
                        continue;
                    }
                }
                return ReadStep::Done;
            }
            if self.confirm_by.is_some_and(|at| now >= at) {
                // The extra replica did not answer in time: the R answers
                // stand.
                return ReadStep::Done;
            }
            if now >= self.timing.deadline {
                let got = self.answers.len();
                let error = unavailable(
                    "read",
                    self.q.strict,
                    needed,
                    got,
                    listed,
                    self.replicas.home,
                );
                let unanswered = self.asked.len().saturating_sub(got);
                return ReadStep::TimedOut { error, unanswered };
            }
            match self.timing.speculate_at {
                Some(at) if now >= at => {
                    // The replicas asked are slow (or dead and not yet
                    // marked down): ask the rest.
                    self.timing.speculate_at = None;
                    self.rescan = Some(Why::Speculate);
                }
                speculate_at => {
                    let deadline = self.timing.deadline;
                    let wake = speculate_at.map_or(deadline, |at| at.min(deadline));
                    return ReadStep::Wait(self.confirm_by.map_or(wake, |at| at.min(wake)));
                }
            }
        }
    }

    /// Marks as asked the replicas the read still needs to make `needed`
    /// answers: this node first, then others as `ask` says (see
    /// [`ReadQuorum::asking`]). Returns whether it asked any.
    fn ask(&mut self, needed: usize, ask: Ask) -> bool {
        let pref = &self.replicas.list;
        let (asked, answers) = (&mut self.asked, &self.answers);
        let from = asked.len();
        let local = listed(pref, &self.me) && !listed(asked, &self.me);
        if local {
            asked.push(self.me.clone());
        }
        // Replicas asked that are still on the list and have not answered.
        let mut waiting = (asked.iter())
            .filter(|n| listed(pref, n) && !answers.iter().any(|(a, _)| same(a, n)))
            .count();
        let rotated = || (0..pref.len()).map(|i| &pref[(self.first + i) % pref.len()]);
        let me = &self.me;
        let unasked = |asked: &NodeList, node: &NodeName| !same(node, me) && !listed(asked, node);
        // Replicas not known to be unreachable, to be sent to only if they
        // are not (every replica left, for `All`).
        for node in rotated() {
            if ask != Ask::All && answers.len() + waiting >= needed {
                break;
            }
            if unasked(asked, node) && (ask == Ask::All || !listed(&self.unreachable, node)) {
                asked.push(node.clone());
                waiting += 1;
            }
        }
        // None of those, and still short: the unreachable ones after all
        // (never to confirm a miss).
        let mut if_reachable = ask != Ask::All;
        if ask == Ask::Enough && asked.len() == from + usize::from(local) {
            if_reachable = false;
            for node in rotated() {
                if answers.len() + waiting >= needed {
                    break;
                }
                if unasked(asked, node) {
                    asked.push(node.clone());
                    waiting += 1;
                }
            }
        }
        self.asking = (from, local);
        self.if_reachable = if_reachable;
        // A confirmation needs another replica (this node, listed, was
        // asked on the view's first ask).
        asked.len() > from + usize::from(local && ask == Ask::Reachable)
    }
}

/// The merge of a whole-key read's answers, and who needs repair.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The merge (`None`: every answer was a miss).
    pub merged: Option<Entry>,
    /// Replicas whose answer differs from the merge: read repair sends
    /// them the merge.
    pub stale: NodeList,
}

/// Merges `answers` through `values` (for plain strings: the newest by
/// (timestamp, node)). `unflushed`, when a FLUSHALL is known, gives what
/// of an answer that FLUSHALL did not remove (`None`: nothing), so a
/// replica that has not heard of it yet answers no removed data.
///
/// One answer (a read this node answered alone) is the merge as it is:
/// it is moved out of `answers`, not copied, and nobody needs repair.
pub fn resolve(
    answers: &mut [(NodeName, Option<Entry>)],
    unflushed: Option<&dyn Fn(Entry) -> Option<Entry>>,
) -> Resolved {
    if let ([(_, only)], None) = (&mut *answers, unflushed) {
        return Resolved {
            merged: only.take(),
            stale: NodeList::new(),
        };
    }
    // The merge, copying one of the answers (the hot path: two equal
    // answers cost one copy and one comparison).
    let mut merged: Option<Entry> = None;
    for (_, e) in answers.iter() {
        let Some(e) = e else { continue };
        let kept;
        let e = match unflushed {
            Some(unflushed) => match unflushed(e.clone()) {
                Some(u) => {
                    kept = u;
                    &kept
                }
                None => continue,
            },
            None => e,
        };
        match &mut merged {
            None => merged = Some(e.clone()),
            Some(m) => {
                m.merge_in(e);
            }
        }
    }
    let stale = match &merged {
        None => NodeList::new(),
        Some(m) => (answers.iter())
            .filter(|(_, e)| e.as_ref() != Some(m))
            .map(|(n, _)| n.clone())
            .collect(),
    };
    Resolved { merged, stale }
}
