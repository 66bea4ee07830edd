//! The replica side: what a node does with each message from a peer.
//!
//! Reads are answered at once from the local store. Writes (a replica
//! `Put`, a hand-off `Transfer`) are merged into the store at once, and
//! acknowledged only after their commit log records were written: the
//! acknowledgement is sent by the log's writer when the batch holding them
//! is written, so the connection reading from the peer never stops for the
//! disk, and many replica writes share one log write.
//! Answers go back over this node's own link to the sender's `reply_to`
//! address; replies to our own requests are handed to the request waiting
//! for them; heartbeats update the routing table.
//!
//! A replica write first moves the local clock past the write's timestamp,
//! so this node's next own write orders after it; a timestamp too far in the
//! future is refused and the coordinator is told why.

use std::sync::Arc;

use bytes::BytesMut;
use tracing::{debug, warn};

use crate::anti_entropy::digest;
use crate::message::{ApplyReq, ApplyResult, PeerMsg, PutResult, RmwPut};
use crate::node::apply::log_parts;
use crate::node::pending::Delivery;
use crate::node::shared::Shared;
use crate::resp::glob;
use crate::ring::{NodeName, Token};
use crate::store::{Applied, Entry};
use crate::transport::{Peer, PeerHandler, Transport};

/// What the replica writes of one message leave to do once logged: their
/// log frames (encoded as they are applied), how many records those hold,
/// and the acknowledgements to send then.
#[derive(Default)]
struct Logged {
    frames: BytesMut,
    records: u64,
    acks: Vec<PeerMsg>,
}

impl Logged {
    /// Room for the frames and acknowledgements of a coalesced message's
    /// `n` writes of about `bytes` in all, so the frames buffer is not
    /// regrown (and copied) a dozen times for a burst of hundreds.
    fn with_room(n: usize, bytes: usize) -> Self {
        Logged {
            frames: BytesMut::with_capacity(bytes),
            records: 0,
            acks: Vec::with_capacity(n),
        }
    }
}

/// The bytes of a write's log frame, for [`Logged::with_room`] (0 for an
/// entry that cannot be logged, which is refused later). A rich entry's
/// encoding is kept, so the write's own `log_parts` does not redo it.
fn frame_len(key: &[u8], entry: &Entry) -> usize {
    log_parts(key, entry).map_or(0, |parts| parts.encoded_len())
}

impl PeerHandler for Shared {
    fn on_clock(&self, from: &Peer, wall_micros: u64, hlc: crate::clock::Timestamp) -> bool {
        self.take_clocks(from, wall_micros, hlc)
    }

    fn on_message(&self, from: &Peer, msg: PeerMsg) {
        // Coalesced answers: each goes to the request waiting for it.
        let msg = match msg {
            PeerMsg::PutAcks { acks } => {
                return self.deliver_all(from, acks, |id, was_live| PeerMsg::PutAck {
                    id,
                    result: PutResult::Ok { was_live },
                })
            }
            PeerMsg::ApplyAcks { acks } => {
                let acks = acks.into_iter().map(|(id, l, p)| (id, (l, p)));
                return self.deliver_all(from, acks, |id, (was_live, present)| {
                    let result = ApplyResult::Done { was_live, present };
                    PeerMsg::ApplyAck { id, result }
                });
            }
            PeerMsg::GetReplies { replies } => {
                return self.deliver_all(from, replies, |id, entry| PeerMsg::GetReply { id, entry })
            }
            PeerMsg::ReadReplies { replies } => {
                return self.deliver_all(from, replies, |id, part| PeerMsg::ReadReply { id, part })
            }
            msg => msg,
        };
        if let Some(id) = msg.reply_id() {
            self.deliver(id, from.name.clone(), msg);
            return;
        }
        let strict = matches!(msg, PeerMsg::IncrStrict { .. });
        let reply = match msg {
            PeerMsg::Heartbeat(hb) => {
                if !self.placement_accepted(from) {
                    return;
                }
                let events = self.membership().on_heartbeat(&hb, crate::clock::instant());
                self.handle_events(events);
                return;
            }
            PeerMsg::Put { id, key, entry } => {
                let mut log = Logged::default();
                self.replica_write(from, id, &key, &entry, &mut log);
                self.ack_when_logged(from, log);
                return;
            }
            PeerMsg::Puts { items } => {
                let bytes = items.iter().map(|(_, k, e)| frame_len(k, e)).sum();
                let mut log = Logged::with_room(items.len(), bytes);
                for (id, key, entry) in &items {
                    self.replica_write(from, *id, key, entry, &mut log);
                }
                self.ack_when_logged(from, log);
                return;
            }
            PeerMsg::PutRmw(put) => {
                let RmwPut {
                    id,
                    key,
                    entry,
                    read,
                } = *put;
                let mut log = Logged::default();
                match self.accept_write(&key, &entry, &mut log) {
                    Ok(applied) => log.acks.push(PeerMsg::PutRmwAck {
                        id,
                        was_live: applied.was_live,
                        conflict: applied.conflicts_with(read),
                    }),
                    Err(why) => {
                        warn!(peer = %from.name, error = %why, "refused a replica write");
                        let result = PutResult::Refused(why);
                        self.net
                            .send(&from.reply_to, PeerMsg::PutAck { id, result });
                    }
                }
                self.ack_when_logged(from, log);
                return;
            }
            PeerMsg::MetaPush { id, meta } => {
                self.on_meta_push(from, id, &meta);
                return;
            }
            PeerMsg::MetaDigest { digest } => {
                self.on_meta_digest(from, digest);
                return;
            }
            PeerMsg::WriteFence { reason } => {
                self.note_fence(&from.name, reason);
                return;
            }
            PeerMsg::Placement {
                tokens,
                replication,
                data_id,
            } => {
                let announced = crate::placement::NodeRecord {
                    placement: crate::placement::Placement {
                        tokens: tokens as usize,
                        replication: replication as usize,
                    },
                    data_id,
                };
                self.take_placement(from, announced);
                return;
            }
            PeerMsg::Apply(req) => {
                let mut log = Logged::default();
                self.typed_write(from, &req, &mut log);
                self.ack_when_logged(from, log);
                return;
            }
            PeerMsg::Applies { items } => {
                let bytes = items.iter().map(|r| frame_len(&r.key, &r.entry)).sum();
                let mut log = Logged::with_room(items.len(), bytes);
                for req in &items {
                    self.typed_write(from, req, &mut log);
                }
                self.ack_when_logged(from, log);
                return;
            }
            PeerMsg::Read { id, key, want } => PeerMsg::ReadReply {
                id,
                part: self
                    .store
                    .part_at(&Token::of(&key), &key, &want)
                    .map(Box::new),
            },
            PeerMsg::Incr {
                id,
                key,
                field,
                by,
                w,
            }
            | PeerMsg::IncrStrict {
                id,
                key,
                field,
                by,
                w,
            } => {
                // Run to completion, with no task (see `coordinator/owner.rs`).
                let to = crate::coordinator::AnswerTo::Peer {
                    to: from.reply_to.clone(),
                    id,
                };
                let q = owner_quorum(w, strict);
                self.increment_owned(Token::of(&key), key, field, by, q, to);
                return;
            }
            PeerMsg::IncrCarry {
                id,
                key,
                field,
                by,
                w,
                strict,
            } => {
                let to = crate::coordinator::AnswerTo::Carrier {
                    to: from.reply_to.clone(),
                    id,
                    name: from.name.clone(),
                };
                let q = owner_quorum(w, strict);
                self.increment_owned(Token::of(&key), key, field, by, q, to);
                return;
            }
            PeerMsg::Transfer { id, items } => {
                self.note_handoff_in();
                // Not acknowledged while the log takes no writes: the
                // sender keeps its copies and tries again later.
                if let Some(why) = self.log.fenced() {
                    debug!(peer = %from.name, reason = %why, "hand-off refused: commit log fenced");
                    return;
                }
                let mut log = Logged::default();
                let mut refused = 0;
                for (key, entry) in &items {
                    // A hand-off carries old timestamps; only refuse the future.
                    if let Err(e) = self.accept_write(key, entry, &mut log) {
                        warn!(peer = %from.name, error = %e, "refused a handed-off entry");
                        refused += 1;
                    }
                }
                // What was refused (stamped too far ahead of this clock by
                // a node whose clock was wrong, say) is not acknowledged:
                // the sender keeps its copies and offers them again later,
                // where an acknowledgement would have had it drop them.
                if refused == 0 {
                    log.acks.push(PeerMsg::TransferAck { id });
                }
                self.ack_when_logged(from, log);
                return;
            }
            PeerMsg::Offer { id, keys } => {
                self.note_handoff_in();
                PeerMsg::OfferReply {
                    id,
                    want: crate::anti_entropy::digest::wanted(&self.store, &keys),
                }
            }
            PeerMsg::Get { id, key } => PeerMsg::GetReply {
                id,
                entry: self.store.get(&key),
            },
            PeerMsg::Keys { id, pattern } => PeerMsg::KeysReply {
                id,
                keys: self
                    .store
                    .live_keys(crate::clock::wall_millis(), |k| glob::matches(&pattern, k)),
            },
            request @ (PeerMsg::AeRoot { .. }
            | PeerMsg::AeGroups { .. }
            | PeerMsg::AeKeys { .. }
            | PeerMsg::AeSections { .. }) => {
                let Some(reply) = self.answer_anti_entropy(from, &request) else {
                    return;
                };
                self.ae_stats
                    .record_answer(&from.name, from.version, &request, &reply);
                reply
            }
            PeerMsg::PutAck { .. }
            | PeerMsg::PutRmwAck { .. }
            | PeerMsg::MetaAck { .. }
            | PeerMsg::PutAcks { .. }
            | PeerMsg::GetReplies { .. }
            | PeerMsg::GetReply { .. }
            | PeerMsg::TransferAck { .. }
            | PeerMsg::KeysReply { .. }
            | PeerMsg::AeGroupsReply { .. }
            | PeerMsg::AeKeysReply { .. }
            | PeerMsg::AeRootReply { .. }
            | PeerMsg::AeSectionsReply { .. }
            | PeerMsg::IncrReply { .. }
            | PeerMsg::IncrCarried { .. }
            | PeerMsg::ReadReply { .. }
            | PeerMsg::ApplyAck { .. }
            | PeerMsg::ApplyAcks { .. }
            | PeerMsg::ReadReplies { .. }
            | PeerMsg::OfferReply { .. } => return,
            // Handled by the transport, through `on_clock`.
            PeerMsg::Clock { .. } => return,
        };
        self.net.send(&from.reply_to, reply);
    }
}

impl Shared {
    /// The answer to an anti-entropy request from `peer` (steps 0, 2 and
    /// 4 of a round); `None` for any other message.
    fn answer_anti_entropy(&self, peer: &Peer, request: &PeerMsg) -> Option<PeerMsg> {
        match request {
            PeerMsg::AeRoot { id, ranges, root } => {
                // The ranges as this node's view has them: a view that
                // differs says "no", and the round goes on step by step.
                let view = self.view.load();
                let mine = digest::shared_ranges(
                    &view.replica_ring,
                    &self.me,
                    &peer.name,
                    self.cfg.replication,
                );
                let agree = mine.fingerprint() == *ranges
                    && digest::root_digest(&self.store, &mine) == *root;
                Some(PeerMsg::AeRootReply {
                    id: *id,
                    agree,
                    filling: self.taking_handoff(),
                })
            }
            PeerMsg::AeGroups { id, ranges, groups } => Some(PeerMsg::AeGroupsReply {
                id: *id,
                leaves: digest::leaves_of_differing_groups(&self.store, ranges, groups),
            }),
            PeerMsg::AeKeys {
                id,
                ranges,
                leaves,
                keys,
            } => {
                // A peer that compares by sections is sent no large rich
                // state whole: it is asked for the key, and compares.
                let by_sections = (peer.version >= crate::message::SECTIONS_SINCE)
                    .then_some(self.cfg.anti_entropy_sections_min_bytes);
                let (push, want) = digest::exchange(&self.store, ranges, leaves, keys, by_sections);
                Some(PeerMsg::AeKeysReply {
                    id: *id,
                    push,
                    want,
                })
            }
            PeerMsg::AeSections { id, key, digests } => {
                let (push, want) = digest::answer_sections(&self.store, key, digests);
                Some(PeerMsg::AeSectionsReply {
                    id: *id,
                    push,
                    want,
                })
            }
            _ => None,
        }
    }

    /// One replica write (a `Put`, alone or in a `Puts`): the clock moves
    /// past its timestamp (or the write is refused and the coordinator told
    /// why), the entry is merged, and its log record and acknowledgement
    /// are added to those the caller sends once the records are logged.
    fn replica_write(&self, from: &Peer, id: u64, key: &[u8], entry: &Entry, log: &mut Logged) {
        let applied = match self.accept_write(key, entry, log) {
            Ok(applied) => applied,
            Err(why) => {
                warn!(peer = %from.name, error = %why, "refused a replica write");
                let result = PutResult::Refused(why);
                self.net
                    .send(&from.reply_to, PeerMsg::PutAck { id, result });
                return;
            }
        };
        // Id 0 is read repair: logged, but nobody waits for an ack.
        if id != 0 {
            let was_live = applied.was_live;
            log.acks.push(PeerMsg::PutAck {
                id,
                result: PutResult::Ok { was_live },
            });
        }
    }

    /// Merges an entry another node sent (a replica write or a hand-off)
    /// and encodes its log record, if one is needed, straight into `log`
    /// (no `Record`, so no copy of the key or value is made). Refused,
    /// with the reason, before anything changes: a timestamp too far ahead
    /// of the local clock (which otherwise moves past it) or a record too
    /// big for the log.
    fn accept_write(&self, key: &[u8], entry: &Entry, log: &mut Logged) -> Result<Applied, String> {
        self.writable_for_peers()?;
        let parts = log_parts(key, entry).map_err(|e| e.to_string())?;
        parts.check()?;
        self.clock
            .observe(entry.version().ts)
            .map_err(|e| e.to_string())?;
        let applied = self.store.apply_at(&Token::of(key), key, entry);
        if applied.needs_log() {
            parts.encode_into(&mut log.frames);
            log.records += 1;
        }
        Ok(applied)
    }

    /// [`Shared::writable`], as the refusal a coordinator reads.
    fn writable_for_peers(&self) -> Result<(), String> {
        match self.log.fenced() {
            None => Ok(()),
            Some(why) => Err(crate::error::MISCONF_PREFIX.to_string() + &why),
        }
    }

    /// Hands each of a coalesced message's answers, rebuilt as the single
    /// answer it stands for by `one`, to the request waiting for it.
    fn deliver_all<T>(
        &self,
        from: &Peer,
        answers: impl IntoIterator<Item = (u64, T)>,
        one: impl Fn(u64, T) -> PeerMsg,
    ) {
        for (id, answer) in answers {
            self.deliver(id, from.name.clone(), one(id, answer));
        }
    }

    /// Hands a reply to the request waiting for it (see [`Delivery`]).
    pub(crate) fn deliver(&self, id: u64, from: NodeName, msg: PeerMsg) {
        if let Delivery::Driven(request, from, msg) = self.pending.deliver(id, from, msg) {
            request.on_reply(self, from, msg);
        }
    }

    /// One typed write (an `Apply`, alone or in an `Applies`): checked and
    /// merged, its log record and answer added to those the caller sends
    /// once the records are logged, or refused at once with the reason.
    fn typed_write(&self, from: &Peer, req: &ApplyReq, log: &mut Logged) {
        match self.accept_checked(req, log) {
            Ok(result) => log.acks.push(PeerMsg::ApplyAck { id: req.id, result }),
            Err(why) => {
                warn!(peer = %from.name, error = %why, "refused a typed write");
                let result = ApplyResult::Refused(why);
                self.net
                    .send(&from.reply_to, PeerMsg::ApplyAck { id: req.id, result });
            }
        }
    }

    /// A typed write from a coordinator ([`PeerMsg::Apply`]): refused as
    /// [`Self::accept_write`] refuses, else checked and merged
    /// ([`Shared::apply_checked`]), its log record encoded into `log`.
    fn accept_checked(&self, req: &ApplyReq, log: &mut Logged) -> Result<ApplyResult, String> {
        self.writable_for_peers()?;
        // One reading of the wall clock for the skew check and for expiry.
        let wall = crate::clock::wall_micros();
        self.clock
            .observe_at(req.entry.version().ts, wall)
            .map_err(|e| e.to_string())?;
        let key = &req.key;
        let (result, logged) =
            self.apply_checked(&Token::of(key), key, &req.entry, &req.check, wall / 1000);
        if let Some(delta) = logged {
            // The bytes the delta came in, unless the check changed it.
            let parts = log_parts(key, &delta).map_err(|e| e.to_string())?;
            // Checked after the merge: a delta too big for the log (which
            // a coordinator never sends) is logged nowhere and refused.
            parts.check()?;
            parts.encode_into(&mut log.frames);
            log.records += 1;
        }
        Ok(result)
    }

    /// Sends `acks` once every record is in the commit log (the records of
    /// one message are appended as one unit). If the log fails, no
    /// acknowledgement is sent: the coordinator then counts this replica as
    /// not having answered.
    fn ack_when_logged(&self, to: &Peer, log: Logged) {
        let Logged {
            frames,
            records,
            acks,
        } = log;
        // The acknowledgements go to one peer, queued together. A drop is
        // counted by the transport, as `send`'s are, and the coordinator
        // retargets.
        if records == 0 {
            self.net.send_all(&to.reply_to, acks);
            return;
        }
        let net: Arc<dyn Transport> = self.net.clone();
        let reply_to = to.reply_to.clone();
        self.log.append_frames_then(
            frames.freeze(),
            records,
            Box::new(move |result| match result {
                Ok(()) => {
                    net.send_all(&reply_to, acks);
                }
                // The coordinator is told at once, so it need not wait out
                // its timeout; the write stays unacknowledged here.
                Err(e) => {
                    warn!(error = %e, "replica write not logged; refusing it");
                    let why = match e {
                        crate::error::Error::Misconf(why) => {
                            crate::error::MISCONF_PREFIX.to_string() + &why
                        }
                        e => e.to_string(),
                    };
                    for ack in acks {
                        let refusal = match ack {
                            PeerMsg::ApplyAck { id, .. } => PeerMsg::ApplyAck {
                                id,
                                result: ApplyResult::Refused(why.clone()),
                            },
                            PeerMsg::PutAck { id, .. } | PeerMsg::PutRmwAck { id, .. } => {
                                PeerMsg::PutAck {
                                    id,
                                    result: PutResult::Refused(why.clone()),
                                }
                            }
                            // A hand-off stays unacknowledged: its sender
                            // keeps its copies and tries again.
                            _ => continue,
                        };
                        net.send(&reply_to, refusal);
                    }
                }
            }),
        );
    }
}

/// The quorum an increment's owner writes its delta with: the `w` the
/// coordinator asked for (itself included), strict or not.
fn owner_quorum(w: u32, strict: bool) -> crate::coordinator::Quorum {
    crate::coordinator::Quorum {
        r: 1,
        w: w as usize,
        strict,
    }
}
