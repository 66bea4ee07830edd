//! Membership: the full routing table, kept by all-to-all heartbeats.
//!
//! Every node heartbeats every node it has ever heard of, *and* every seed
//! address, at a fixed interval, whether it thinks them up or down. That is
//! what makes a crashed-and-restarted node, or the far side of a healed
//! partition, come back without help: the heartbeats never stopped going
//! there, so the first one that gets through is noticed at once.
//!
//! A member is **up** while its heartbeats arrive, and **down** once none has
//! arrived for the failure timeout; the sweep in [`Membership::tick`] does
//! that. Only a heartbeat received *directly* from a node makes it up: the
//! member lists that heartbeats carry only introduce names and addresses
//! (so a node that knows one seed learns everyone), never liveness, so stale
//! gossip can never resurrect a dead node.
//!
//! Identity includes a generation that grows on every start. A heartbeat
//! with a lower generation than the one known is from a previous life of
//! that node and is ignored; a higher one means the node restarted, which
//! matters to replication (it may have lost data) even if it never looked
//! down.
//!
//! This is a sans-IO state machine: time comes in as an argument, events
//! come out as values, and the node decides what to send and log.
//!
//! A node that left, or was forgotten (`ringkv leave`, `ringkv forget`),
//! is removed with [`Membership::forget`]: no longer heartbeated, and not
//! learned again from stale member lists; only a heartbeat from it
//! directly brings it back, once the node has decided to take it (a
//! replacement with an empty data directory).
//!
//! Deliberately left out: indirect probing and suspicion (SWIM). A node
//! that dies and is never forgotten is heartbeated forever, which costs
//! one small message per interval.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a node tells others about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Unique node name; its ring token is SHA-1(name).
    pub name: String,
    /// Grows on every start of the node.
    pub generation: u64,
    /// Address peers should use for node-to-node traffic.
    pub peer: String,
    /// RESP client address.
    pub client: String,
    /// HTTP admin address.
    pub admin: String,
}

/// The heartbeat message: who I am and whom I see up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sender.
    pub from: MemberInfo,
    /// The members the sender sees up (itself excluded).
    pub members: Vec<MemberInfo>,
    /// Live keys the sender holds (for status displays).
    pub keys: u64,
}

/// A member's state as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Heartbeats arrive.
    Up,
    /// No heartbeat within the failure timeout, or never heard directly.
    Down,
    /// In `/status` only (the routing table holds up and down): `ringkv
    /// leave` runs on it.
    Leaving,
    /// In `/status` only: it left, or was forgotten (shown for a while).
    Left,
}

/// One row of the routing table.
#[derive(Clone, Debug)]
pub struct Member {
    /// What the member said about itself last.
    pub info: MemberInfo,
    /// Up or down.
    pub state: State,
    /// When its last direct heartbeat arrived, if ever.
    pub last_heard: Option<Instant>,
    /// When `state` last changed.
    pub since: Instant,
    /// Live keys it reported holding in its last heartbeat.
    pub keys: u64,
}

/// A change in the routing table, with its reason (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member is up (first heartbeat, or back after being down).
    Up {
        /// Its name.
        name: String,
        /// Why.
        reason: String,
        /// How long it was silent, if it was heard before.
        away: Option<Duration>,
    },
    /// A member is down.
    Down {
        /// Its name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A member restarted (higher generation) without being seen down.
    Restarted {
        /// Its name.
        name: String,
        /// The generation it had.
        old: u64,
        /// The generation it has now.
        new: u64,
    },
    /// A name heard of through another node's member list.
    Learned {
        /// Its name.
        name: String,
        /// Who mentioned it.
        via: String,
    },
    /// A heartbeat carried this node's own name with another generation:
    /// two processes share a name.
    NameClash {
        /// The other process's generation.
        generation: u64,
        /// The address it advertises.
        peer: String,
    },
}

impl Event {
    /// Whether the event changes the set of up members or their identity
    /// (and so the ring and replica placement).
    pub fn changes_ring(&self) -> bool {
        matches!(
            self,
            Event::Up { .. } | Event::Down { .. } | Event::Restarted { .. }
        )
    }
}

/// The routing table of one node.
#[derive(Debug)]
pub struct Membership {
    me: MemberInfo,
    members: BTreeMap<String, Member>,
    seeds: Vec<String>,
    failure_timeout: Duration,
    last_tick: Option<Instant>,
    /// Nodes removed for good (left or forgotten), by name, with the peer
    /// address they had: not learned again from other nodes' lists, not
    /// heartbeated (seeds included), until heard from directly again.
    forgotten: BTreeMap<String, String>,
}

impl Membership {
    /// A routing table that knows only itself and its seed addresses.
    pub fn new(me: MemberInfo, seeds: Vec<String>, failure_timeout: Duration) -> Self {
        Membership {
            me,
            members: BTreeMap::new(),
            seeds,
            failure_timeout,
            last_tick: None,
            forgotten: BTreeMap::new(),
        }
    }

    /// Removes `name` for good (it left, or was forgotten): it is no longer
    /// a member, not heartbeated, and not learned again from other nodes'
    /// lists. A heartbeat from it directly makes it a member again (the
    /// node decides first whether to take it: a replacement, or the same
    /// data coming back). Returns whether it was a member.
    pub fn forget(&mut self, name: &str) -> bool {
        let Some(m) = self.members.remove(name) else {
            return false;
        };
        self.forgotten.insert(name.to_string(), m.info.peer);
        true
    }

    /// Whether a seed address has not been heard from yet (no member
    /// advertises it).
    pub fn seeds_unheard(&self) -> bool {
        self.seeds.iter().any(|seed| {
            *seed != self.me.peer
                && !self.forgotten.values().any(|f| f == seed)
                && !self.members.values().any(|m| m.info.peer == *seed)
        })
    }

    /// Whether `name` was removed for good and not heard from since.
    pub fn is_forgotten(&self, name: &str) -> bool {
        self.forgotten.contains_key(name)
    }

    /// This node's own description.
    pub fn me(&self) -> &MemberInfo {
        &self.me
    }

    /// Every other member known, up or down, by name.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// A member by name (not this node).
    pub fn get(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    /// Applies a heartbeat received directly from its sender.
    pub fn on_heartbeat(&mut self, hb: &Heartbeat, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let from = &hb.from;
        if from.name == self.me.name {
            if from.generation != self.me.generation || from.peer != self.me.peer {
                events.push(Event::NameClash {
                    generation: from.generation,
                    peer: from.peer.clone(),
                });
            }
            return events;
        }
        self.forgotten.remove(&from.name);
        self.heard_from(hb, now, &mut events);
        if let Some(m) = self.members.get_mut(&from.name) {
            if m.info.generation == from.generation {
                m.keys = hb.keys;
            }
        }
        for info in &hb.members {
            if info.name != self.me.name
                && !self.members.contains_key(&info.name)
                && !self.forgotten.contains_key(&info.name)
            {
                self.members.insert(
                    info.name.clone(),
                    Member {
                        info: info.clone(),
                        state: State::Down,
                        last_heard: None,
                        since: now,
                        keys: 0,
                    },
                );
                events.push(Event::Learned {
                    name: info.name.clone(),
                    via: from.name.clone(),
                });
            }
        }
        events
    }

    fn heard_from(&mut self, hb: &Heartbeat, now: Instant, events: &mut Vec<Event>) {
        let from = &hb.from;
        let Some(m) = self.members.get_mut(&from.name) else {
            self.members.insert(
                from.name.clone(),
                Member {
                    info: from.clone(),
                    state: State::Up,
                    last_heard: Some(now),
                    since: now,
                    keys: 0,
                },
            );
            events.push(Event::Up {
                name: from.name.clone(),
                reason: format!("first heartbeat, from {}", from.peer),
                away: None,
            });
            return;
        };
        if from.generation < m.info.generation {
            return; // a message from a previous life of the node
        }
        let restarted = from.generation > m.info.generation;
        let old_gen = m.info.generation;
        if m.info != *from {
            m.info = from.clone();
        }
        match m.state {
            State::Down => {
                let reason = match m.last_heard {
                    Some(t) => format!(
                        "heartbeat again after {} ms of silence (generation {})",
                        now.saturating_duration_since(t).as_millis(),
                        from.generation
                    ),
                    None => format!("first heartbeat, from {}", from.peer),
                };
                m.state = State::Up;
                m.since = now;
                events.push(Event::Up {
                    name: from.name.clone(),
                    reason,
                    away: m.last_heard.map(|t| now.saturating_duration_since(t)),
                });
            }
            State::Up if restarted => events.push(Event::Restarted {
                name: from.name.clone(),
                old: old_gen,
                new: from.generation,
            }),
            State::Up | State::Leaving | State::Left => {}
        }
        m.last_heard = Some(now);
    }

    /// The failure sweep: marks down every up member not heard from within
    /// the failure timeout.
    ///
    /// If this sweep comes more than half a failure timeout after the
    /// previous one, this node itself was paused (descheduled, swapping, a
    /// stopped VM): the heartbeats that arrived meanwhile still sit unread
    /// in its sockets, so silence proves nothing yet and the sweep is
    /// skipped once, letting the readers catch up.
    pub fn tick(&mut self, now: Instant) -> Vec<Event> {
        let timeout = self.failure_timeout;
        let paused = self
            .last_tick
            .is_some_and(|t| now.saturating_duration_since(t) > timeout / 2);
        self.last_tick = Some(now);
        let mut events = Vec::new();
        if paused {
            return events;
        }
        for (name, m) in self.members.iter_mut() {
            let Some(heard) = m.last_heard else { continue };
            let silent = now.saturating_duration_since(heard);
            if m.state == State::Up && silent > timeout {
                m.state = State::Down;
                m.since = now;
                events.push(Event::Down {
                    name: name.clone(),
                    reason: format!(
                        "no heartbeat for {} ms (failure timeout {} ms)",
                        silent.as_millis(),
                        timeout.as_millis()
                    ),
                });
            }
        }
        events
    }

    /// The heartbeat this node sends now, reporting `keys` live keys.
    pub fn heartbeat(&self, keys: u64) -> Heartbeat {
        Heartbeat {
            keys,
            from: self.me.clone(),
            members: self
                .members
                .values()
                .filter(|m| m.state == State::Up)
                .map(|m| m.info.clone())
                .collect(),
        }
    }

    /// Where heartbeats go: every known member, up or down, and every seed,
    /// each address once, never this node's own.
    pub fn targets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .members
            .values()
            .map(|m| m.info.peer.clone())
            .chain(self.seeds.iter().cloned())
            .filter(|a| *a != self.me.peer && !self.forgotten.values().any(|f| f == a))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The members up now, this node included, with their generations.
    pub fn up(&self) -> Vec<(String, u64)> {
        std::iter::once((self.me.name.clone(), self.me.generation))
            .chain(
                self.members
                    .values()
                    .filter(|m| m.state == State::Up)
                    .map(|m| (m.info.name.clone(), m.info.generation)),
            )
            .collect()
    }

    /// The peer address of a member (this node included).
    pub fn peer_addr(&self, name: &str) -> Option<&str> {
        if name == self.me.name {
            return Some(&self.me.peer);
        }
        self.members.get(name).map(|m| m.info.peer.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, generation: u64) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            generation,
            peer: format!("{name}:1"),
            client: format!("{name}:2"),
            admin: format!("{name}:3"),
        }
    }

    fn hb(name: &str, generation: u64, members: &[MemberInfo]) -> Heartbeat {
        Heartbeat {
            from: info(name, generation),
            members: members.to_vec(),
            keys: 0,
        }
    }

    fn table() -> (Membership, Instant) {
        let m = Membership::new(
            info("me", 1),
            vec!["seed:1".into()],
            Duration::from_millis(1000),
        );
        (m, Instant::now())
    }

    #[test]
    fn first_heartbeat_brings_a_member_up() {
        let (mut m, t0) = table();
        let ev = m.on_heartbeat(&hb("a", 1, &[]), t0);
        assert!(matches!(&ev[..], [Event::Up { name, .. }] if name == "a"));
        assert_eq!(m.up().len(), 2);
    }

    #[test]
    fn silence_past_the_timeout_marks_down_and_a_heartbeat_brings_back() {
        let (mut m, t0) = table();
        m.on_heartbeat(&hb("a", 1, &[]), t0);
        assert!(m.tick(t0 + Duration::from_millis(999)).is_empty());
        let ev = m.tick(t0 + Duration::from_millis(1001));
        assert!(matches!(&ev[..], [Event::Down { name, .. }] if name == "a"));
        assert!(
            m.tick(t0 + Duration::from_millis(5000)).is_empty(),
            "logged once"
        );
        assert!(
            m.targets().contains(&"a:1".to_string()),
            "down nodes are still heartbeated"
        );
        let ev = m.on_heartbeat(&hb("a", 1, &[]), t0 + Duration::from_millis(6000));
        assert!(matches!(&ev[..], [Event::Up { reason, .. }] if reason.contains("silence")));
    }

    #[test]
    fn a_sweep_after_a_local_pause_judges_nobody() {
        let (mut m, t0) = table();
        m.on_heartbeat(&hb("a", 1, &[]), t0);
        assert!(m.tick(t0 + Duration::from_millis(100)).is_empty());
        // The node itself stalled for 2 s: its next sweep is skipped...
        assert!(m.tick(t0 + Duration::from_millis(2100)).is_empty());
        // ...and the one after judges again.
        let ev = m.tick(t0 + Duration::from_millis(2150));
        assert!(matches!(&ev[..], [Event::Down { .. }]));
    }

    #[test]
    fn member_lists_introduce_names_but_not_liveness() {
        let (mut m, t0) = table();
        let ev = m.on_heartbeat(&hb("a", 1, &[info("b", 4), info("me", 1)]), t0);
        assert_eq!(ev.len(), 2);
        assert!(matches!(&ev[1], Event::Learned { name, via } if name == "b" && via == "a"));
        assert_eq!(m.get("b").unwrap().state, State::Down);
        assert!(m.targets().contains(&"b:1".to_string()));
        assert_eq!(m.up().len(), 2);
    }

    #[test]
    fn generations_tell_restarts_from_stale_messages() {
        let (mut m, t0) = table();
        m.on_heartbeat(&hb("a", 5, &[]), t0);
        assert!(m.on_heartbeat(&hb("a", 4, &[]), t0).is_empty());
        let later = t0 + Duration::from_millis(900);
        let ev = m.on_heartbeat(&hb("a", 6, &[]), later);
        assert_eq!(
            ev,
            vec![Event::Restarted {
                name: "a".into(),
                old: 5,
                new: 6
            }]
        );
        // A stale heartbeat does not refresh liveness.
        m.on_heartbeat(&hb("a", 5, &[]), t0 + Duration::from_millis(1800));
        assert_eq!(m.tick(t0 + Duration::from_millis(1901)).len(), 1);
    }

    #[test]
    fn targets_include_seeds_once_and_never_self() {
        let (mut m, t0) = table();
        m.on_heartbeat(&hb("seed", 1, &[info("me", 1)]), t0);
        let mut t = m.targets();
        t.sort();
        assert_eq!(t, vec!["seed:1".to_string()]);
    }

    #[test]
    fn own_name_with_another_generation_is_a_clash() {
        let (mut m, t0) = table();
        let ev = m.on_heartbeat(&hb("me", 9, &[]), t0);
        assert!(matches!(&ev[..], [Event::NameClash { generation: 9, .. }]));
        assert!(m
            .on_heartbeat(&hb("me", 1, &[]), t0)
            .iter()
            .all(|e| !matches!(e, Event::Up { .. })));
    }

    #[test]
    fn a_forgotten_node_is_not_heartbeated_nor_learned_again_until_it_speaks() {
        let (mut m, t0) = table();
        m.on_heartbeat(&hb("seed", 1, &[info("gone", 1)]), t0);
        m.on_heartbeat(&hb("gone", 1, &[]), t0);
        assert!(m.forget("gone"));
        assert!(!m.forget("gone"));
        assert!(m.is_forgotten("gone"));
        assert!(m.get("gone").is_none());
        assert_eq!(m.targets(), vec!["seed:1".to_string()]);
        // A stale list from another node does not bring it back.
        let ev = m.on_heartbeat(&hb("seed", 1, &[info("gone", 1)]), t0);
        assert!(ev.is_empty(), "{ev:?}");
        assert!(m.get("gone").is_none());
        // Forgotten as a seed too: its address is not heartbeated.
        let mut s = Membership::new(info("me", 1), vec!["gone:1".into()], Duration::from_secs(1));
        s.on_heartbeat(&hb("gone", 1, &[]), t0);
        assert!(s.forget("gone"));
        assert!(s.targets().is_empty());
        // It speaks again (the node decided to take it): a member again.
        let ev = s.on_heartbeat(&hb("gone", 2, &[]), t0);
        assert!(matches!(&ev[..], [Event::Up { .. }]), "{ev:?}");
        assert!(!s.is_forgotten("gone"));
        assert_eq!(s.targets(), vec!["gone:1".to_string()]);
    }
}
