//! A counter owner's increment, run to completion by the events that reach
//! it: no task, no future, no waking.
//!
//! An owner used to spawn a task for each increment a peer sent it, which
//! ran the quorum write's future (`replicate`) beside the log append's.
//! `bench/callgrind.sh` put that at about 13,000 instructions for each
//! increment the node owned, about a third of them the task and the futures
//! themselves: the futures' state moved and polled, a join, an inbox and
//! its waker. Here the increment is a value registered in `Pending`
//! ([`Driven`]) and stepped by whatever reaches it, on the task that
//! brought it:
//!
//! - it starts in the peer handler (or in `Shared::increment`, when this
//!   node owns the key): applied and staged in the log, then a first step;
//! - a replica's acknowledgement is handed to it ([`Driven::on_reply`]);
//! - the log's answer calls it (a callback on the staged batch,
//!   `log::Appending::then`);
//! - the sweeper calls it when the instant it asked for passes, and every
//!   view change does ([`Driven::on_poke`]).
//!
//! Each step feeds the [`WriteQuorum`] and does what it says, as the async
//! driver in `mod.rs` does for every other write; once both the quorum and
//! the log have answered, the step that saw it last removes the request
//! from `Pending` and sends the answer. This is the first request of issue
//! 19's run-to-completion driver; the rest still run as futures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::message::{IncrResult, PeerMsg};
use crate::metrics::Op;
use crate::node::pending::Driven;
use crate::node::shared::{Shared, View};
use crate::quorum::{replicas, Ack, Quorum, WriteOutcome, WriteQuorum, WriteStep};
use crate::ring::{NodeName, Token};
use crate::store::{Entry, Version};

/// Where an increment's answer goes.
pub(crate) enum AnswerTo {
    /// The coordinator that sent it: an `IncrReply` carrying its id.
    Peer { to: Arc<str>, id: u64 },
    /// A coordinator that is one of the key's replicas and asked to carry
    /// the delta ([`PeerMsg::IncrCarry`]): counted as acknowledging it
    /// when the view lists it, and then answered
    /// [`PeerMsg::IncrCarried`], with the delta, once the rest is done.
    Carrier {
        to: Arc<str>,
        id: u64,
        name: NodeName,
    },
    /// This node's own request, waiting in `Pending` under this id.
    Here(u64),
}

/// An increment this node applied as the key's owner, until it answers.
struct OwnedIncrement {
    /// Its id in `Pending`, which its `Put`s carry.
    id: u64,
    wake_at: AtomicU64,
    state: Mutex<State>,
}

struct State {
    pos: Token,
    key: Bytes,
    delta: Entry,
    strict: bool,
    /// The counter's value, as this node's copy has it after the delta.
    value: i64,
    /// The coordinator that carries the delta (see [`AnswerTo::Carrier`]),
    /// and whether a view listed it, so that it was counted.
    carrier: Option<(NodeName, bool)>,
    write: WriteQuorum,
    /// `None` once answered.
    answer: Option<AnswerTo>,
    /// The log's answer, once in.
    logged: Option<Result<()>>,
    /// The quorum's, once in.
    replicated: Option<Result<WriteOutcome>>,
}

impl Shared {
    /// Applies an increment as the owner of this node's share (see
    /// `counter.rs`): reads, checks and merges under the key's lock, stages
    /// the delta in the log and replicates it at once, and answers `to`
    /// once both are done: the log has the record and `q.w` replicas in
    /// all have the delta. `pos` is the key's token.
    pub(crate) fn increment_owned(
        &self,
        pos: Token,
        key: Bytes,
        field: Option<Bytes>,
        by: i64,
        q: Quorum,
        to: AnswerTo,
    ) {
        if let Some(why) = self.log.fenced() {
            let why = crate::error::MISCONF_PREFIX.to_string() + &why;
            return self.answer_increment(to, IncrResult::Invalid(why));
        }
        // Refused before anything is applied while a replica could not
        // hold the delta (a write would refuse it only after).
        if let Err(e) = self.check_replicas_hold_counters(&pos, q.strict) {
            let result = match e {
                Error::InvalidInput(why) => IncrResult::Invalid(why),
                e => IncrResult::Failed(e.to_string()),
            };
            return self.answer_increment(to, result);
        }
        // One reading of the wall clock for the stamp and for expiry.
        let wall = crate::clock::wall_micros();
        let now = wall / 1000;
        let updated = self.store.update_at(&pos, &key, now, |current| {
            if let Some(c) = &current {
                self.clock.advance_past(c.version.ts);
            }
            let version = Version {
                ts: self.clock.now_at(wall),
                node: self.id,
            };
            Entry::increment(current, field.as_ref(), self.share_id(), by, version, now)
        });
        let (delta, value, applied) = match updated {
            Ok(done) => done,
            Err(why) => return self.answer_increment(to, IncrResult::Refused(why)),
        };
        // Staged in the log now, before the replicas are sent the delta, as
        // a coordinator's own copy of a SET is: the two waits overlap.
        let logging = match applied.needs_log() {
            true => match self.begin_log(&key, &delta) {
                Ok(appending) => Some(appending),
                Err(e) => return self.answer_increment(to, not_logged(e)),
            },
            false => None,
        };
        let deadline = crate::clock::instant() + self.cfg.request_timeout();
        let id = self.pending.next_id();
        let request = Arc::new(OwnedIncrement {
            id,
            wake_at: AtomicU64::new(u64::MAX),
            state: Mutex::new(State {
                pos,
                key,
                write: WriteQuorum::new(self.me.clone(), q, delta.version(), deadline),
                delta,
                strict: q.strict,
                value,
                carrier: match &to {
                    AnswerTo::Carrier { name, .. } => Some((name.clone(), false)),
                    _ => None,
                },
                answer: Some(to),
                logged: logging.is_none().then_some(Ok(())),
                replicated: None,
            }),
        });
        self.pending.register_driven(id, request.clone());
        if let Some(appending) = logging {
            // A weak handle: the callback waits in the log's batch, which
            // the node holds.
            let (node, me) = (self.this.clone(), request.clone());
            appending.then(Box::new(move |result| {
                if let Some(node) = node.upgrade() {
                    me.on_logged(&node, result);
                }
            }));
        }
        // The first step: the replicas are sent the delta, and this node
        // counts as one of them.
        request.step(self, None);
    }

    /// Sends an increment's answer where it goes (a carrier that was not
    /// counted is answered as any coordinator, and not sent the delta).
    fn answer_increment(&self, to: AnswerTo, result: IncrResult) {
        match to {
            AnswerTo::Peer { to, id } | AnswerTo::Carrier { to, id, .. } => {
                self.net.send(&to, PeerMsg::IncrReply { id, result });
            }
            AnswerTo::Here(id) => {
                self.deliver(id, self.me.clone(), PeerMsg::IncrReply { id, result })
            }
        }
    }

    /// While some link speaks a protocol older than 7: refuses, naming the
    /// node, when a replica of the key at `pos` could not hold a counter.
    fn check_replicas_hold_counters(&self, pos: &Token, strict: bool) -> Result<()> {
        // No link is older: nothing to look up (every increment, at full load).
        if self
            .net
            .oldest_peer_version()
            .is_none_or(|v| v >= super::RICH_SINCE)
        {
            return Ok(());
        }
        let view = self.view.load();
        let ring = &view.write_ring;
        let replicas = replicas::replicas(&view, ring, pos, self.cfg.replication, strict);
        self.check_replicas_hold_rich(&view, &replicas.list)
    }
}

impl Driven for OwnedIncrement {
    fn on_reply(&self, shared: &Shared, from: NodeName, msg: PeerMsg) {
        self.step(shared, Some((from, msg)));
    }

    fn on_poke(&self, shared: &Shared) {
        self.step(shared, None);
    }

    fn wake_at(&self) -> &AtomicU64 {
        &self.wake_at
    }
}

impl OwnedIncrement {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every step leaves the state whole: a panic mid-step (a bug)
        // leaves at worst a request that times out.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `reply` (a replica's answer), if any, and does what the quorum
    /// says next; answers if that was the last thing missing.
    fn step(&self, shared: &Shared, reply: Option<(NodeName, PeerMsg)>) {
        let answer = {
            let mut state = self.lock();
            if state.answer.is_some() && state.replicated.is_none() {
                if let Some((from, msg)) = reply {
                    shared.take_write_ack(&mut state.write, from, msg);
                }
                self.drive(shared, &mut state);
            }
            state.answer(&shared.me)
        };
        self.send(shared, answer);
    }

    /// The log's answer.
    fn on_logged(&self, shared: &Shared, result: Result<()>) {
        let answer = {
            let mut state = self.lock();
            state.logged = Some(result);
            state.answer(&shared.me)
        };
        self.send(shared, answer);
    }

    fn send(&self, shared: &Shared, answer: Option<Answer>) {
        match answer {
            None => {}
            Some(Answer::Result(to, result)) => {
                shared.pending.remove(self.id);
                shared.answer_increment(to, result);
            }
            Some(Answer::Carried {
                to,
                id,
                value,
                delta,
            }) => {
                shared.pending.remove(self.id);
                shared
                    .net
                    .send(&to, PeerMsg::IncrCarried { id, value, delta });
            }
        }
    }

    /// Sends the delta to the replicas a new view names, then does what
    /// the quorum says until it waits or is done (`replicate` in `mod.rs`,
    /// for a write already applied and logged here).
    fn drive(&self, shared: &Shared, state: &mut State) {
        let view = shared.view.load();
        if state.write.is_new_view(view.epoch) {
            let ring = &view.write_ring;
            let replicas = match shared.write_replicas(&view, ring, &state.pos, state.strict) {
                Ok(replicas) => replicas,
                Err(e) => {
                    state.replicated = Some(Err(e));
                    return;
                }
            };
            let State {
                write,
                key,
                delta,
                carrier,
                ..
            } = state;
            let asking = write.on_view(view.epoch, replicas);
            let local = asking.local;
            // The carrier is not sent the delta: it applies and logs the
            // one it is answered with before it answers its client, so it
            // counts as acknowledging it now.
            let carried = carrier.as_mut().and_then(|(name, counted)| {
                let listed = asking.remote.iter().any(|n| n == name);
                *counted |= listed;
                listed.then(|| name.clone())
            });
            let sent = asking
                .remote
                .iter()
                .filter(|n| Some(*n) != carried.as_ref());
            self.send_delta(shared, &view, sent, key, delta);
            // Applied and logged here already: one acknowledgement.
            if local {
                let me = write.me().clone();
                write.on_ack(me, Ack::done(false));
            }
            if let Some(name) = carried {
                write.on_ack(name, Ack::done(false));
            }
        }
        let now = crate::clock::instant();
        loop {
            match state.write.next(now) {
                WriteStep::Done(result) => {
                    state.replicated = Some(result);
                    return;
                }
                WriteStep::TimedOut { error, unanswered } => {
                    shared.metrics.replica_timeouts(Op::Write, unanswered);
                    state.replicated = Some(Err(error));
                    return;
                }
                // Only a typed write is refused for the key's type (a
                // `Put` never is); followed all the same, for the machine.
                WriteStep::Force(targets) => {
                    self.send_delta(shared, &view, &targets.remote, &state.key, &state.delta);
                    if targets.local {
                        let me = state.write.me().clone();
                        state.write.on_ack(me, Ack::done(false));
                    }
                }
                WriteStep::Wait(until) => {
                    self.wake_at
                        .store(shared.pending.micros(until), Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

impl OwnedIncrement {
    /// Sends the delta to `nodes` as a plain write carrying this request's id.
    fn send_delta<'n>(
        &self,
        shared: &Shared,
        view: &View,
        nodes: impl IntoIterator<Item = &'n NodeName>,
        key: &Bytes,
        delta: &Entry,
    ) {
        for node in nodes {
            let (key, entry) = (key.clone(), delta.clone());
            shared.send_to(
                view,
                node,
                PeerMsg::Put {
                    id: self.id,
                    key,
                    entry,
                },
            );
        }
    }
}

/// What an increment answers, and where.
enum Answer {
    /// An `IncrReply` (or this node's own request's answer).
    Result(AnswerTo, IncrResult),
    /// An `IncrCarried`: the counted carrier is sent the delta.
    Carried {
        to: Arc<str>,
        id: u64,
        value: i64,
        delta: Entry,
    },
}

impl State {
    /// The answer, once both the log and the quorum have answered and it
    /// was not sent yet.
    fn answer(&mut self, me: &NodeName) -> Option<Answer> {
        if self.logged.is_none() || self.replicated.is_none() {
            return None;
        }
        let to = self.answer.take()?;
        let result = match (self.logged.take()?, self.replicated.take()?) {
            (Err(e), _) => not_logged(e),
            (Ok(()), Ok(_)) => match (to, &self.carrier) {
                (AnswerTo::Carrier { to, id, .. }, Some((_, true))) => {
                    return Some(Answer::Carried {
                        to,
                        id,
                        value: self.value,
                        delta: self.delta.clone(),
                    })
                }
                (to, _) => return Some(Answer::Result(to, IncrResult::Value(self.value))),
            },
            (Ok(()), Err(e)) => IncrResult::Failed(format!(
                "{e} (the increment was applied by {me}, and may count)"
            )),
        };
        Some(Answer::Result(to, result))
    }
}

/// The answer to an increment this node applied but could not log. The
/// replicas may have it (they are sent it while the log writes), so it
/// is indeterminate like any increment whose answer did not come.
fn not_logged(e: Error) -> IncrResult {
    IncrResult::Failed(format!(
        "the increment was applied but not logged, and may or may not count: {e}"
    ))
}
