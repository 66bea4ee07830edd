//! ringkv: a Dynamo-style leaderless key-value cluster that speaks RESP.
//!
//! A map of the crate, from the bottom up:
//!
//! | module | what it is for |
//! |---|---|
//! | [`fuzzing`] | fuzz target bodies, replayed as tests |
//! | [`error`] | the one error enum |
//! | [`alloc`] | the global allocator: mimalloc without its aligned detour |
//! | [`auth`] | cluster-secret proofs, rate-limited refusal logs |
//! | [`config`] | typed settings, defaults, env overrides, validation |
//! | [`clock`] | hybrid logical clock for write timestamps |
//! | [`history`] | the one history checker every Jepsen-style test uses |
//! | [`values`] | what a value is (string, tombstone, expiry, counter, hash, set) and how two versions merge |
//! | [`store`] | the entries a node holds, by leaf; the flush marker |
//! | [`metadata`] | the cluster-wide record every node holds (FLUSHALL marker) |
//! | [`ring`] | SHA-1 tokens, owners, preference lists (pure) |
//! | [`membership`] | routing table, heartbeats, failure sweep (sans-IO) |
//! | [`message`] | peer messages, protocol versions, compatibility with older peers |
//! | [`encoding`] | the one place bytes become messages (bincode) |
//! | [`transport`] | the peer network seam: TCP links, handshake and version negotiation, fault injection |
//! | [`coordinator`] | quorum reads and writes, read repair |
//! | [`sync`] | when to reconcile: on ring changes and periodically; strays |
//! | [`anti_entropy`] | digest-based reconciliation between replicas |
//! | [`log`] | the commit log: group commit, recovery, compaction |
//! | [`scenario`] | scenario scripts: parser and runner |
//! | [`resp`] | the RESP2/RESP3 client protocol, the command table, commands |
//! | [`admin`] | HTTP health, status, metrics, fault commands |
//! | [`metrics`] | counters |
//! | [`node`] | wiring it all together; start and shutdown |
//! | [`cli`] | `ringkv node`, `up`, `status` |
//!
//! `ARCHITECTURE.md` follows a SET and a GET through these modules.

#![warn(missing_docs)]

pub mod acl;
pub mod admin;
pub mod alloc;
pub mod anti_entropy;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod coordinator;
pub mod dashboard;
pub mod encoding;
pub mod error;
pub mod events;
pub mod fuzzing;
pub mod handoff;
pub mod history;
pub mod log;
pub mod membership;
pub mod message;
pub mod metadata;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod quorum;
pub mod resp;
pub mod ring;
pub mod scenario;
pub mod skew;
pub mod store;
pub mod sync;
pub mod throttle;
pub mod tls;
pub mod transport;
pub mod values;
