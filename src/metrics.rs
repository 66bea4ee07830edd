//! Counters a node keeps for `/metrics`.
//!
//! Plain atomics, bumped on the hot path with relaxed ordering and rendered
//! in the Prometheus text format by the admin server. Each counter's doc is
//! its `# HELP` line.
//!
//! Deliberately left out: latency histograms (planned with the metrics
//! issue).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The node's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Client commands executed.
    pub commands: AtomicU64,
    /// Client commands answered with an error.
    pub command_errors: AtomicU64,
    /// Quorum reads that succeeded.
    pub reads_ok: AtomicU64,
    /// Quorum reads that failed (too few replicas in time).
    pub reads_failed: AtomicU64,
    /// Quorum writes that succeeded.
    pub writes_ok: AtomicU64,
    /// Quorum writes that failed (too few replicas in time).
    pub writes_failed: AtomicU64,
    /// Stale replicas sent the newest version after a read.
    pub read_repairs: AtomicU64,
    /// Membership changes that altered the ring.
    pub membership_changes: AtomicU64,
    /// Entries handed to other nodes after ring changes.
    pub handoff_entries: AtomicU64,
    /// Local copies dropped after hand-off.
    pub handoff_dropped: AtomicU64,
    /// Heartbeats sent.
    pub heartbeats_sent: AtomicU64,
    /// Client connections accepted.
    pub client_connections: AtomicU64,
}

/// Appends one counter in Prometheus text format.
pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# HELP ringkv_{name} {help}\n# TYPE ringkv_{name} counter\nringkv_{name} {value}"
    );
}

/// Appends one gauge in Prometheus text format.
pub fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP ringkv_{name} {help}\n# TYPE ringkv_{name} gauge\nringkv_{name} {value}"
    );
}

impl Metrics {
    /// Renders every counter.
    pub fn render(&self, out: &mut String) {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            out,
            "commands_total",
            "Client commands executed.",
            c(&self.commands),
        );
        counter(
            out,
            "command_errors_total",
            "Client commands answered with an error.",
            c(&self.command_errors),
        );
        counter(
            out,
            "reads_ok_total",
            "Quorum reads that succeeded.",
            c(&self.reads_ok),
        );
        counter(
            out,
            "reads_failed_total",
            "Quorum reads that failed.",
            c(&self.reads_failed),
        );
        counter(
            out,
            "writes_ok_total",
            "Quorum writes that succeeded.",
            c(&self.writes_ok),
        );
        counter(
            out,
            "writes_failed_total",
            "Quorum writes that failed.",
            c(&self.writes_failed),
        );
        counter(
            out,
            "read_repairs_total",
            "Stale replicas repaired after a read.",
            c(&self.read_repairs),
        );
        counter(
            out,
            "membership_changes_total",
            "Membership changes that altered the ring.",
            c(&self.membership_changes),
        );
        counter(
            out,
            "handoff_entries_total",
            "Entries handed to other nodes after ring changes.",
            c(&self.handoff_entries),
        );
        counter(
            out,
            "handoff_dropped_total",
            "Local copies dropped after hand-off.",
            c(&self.handoff_dropped),
        );
        counter(
            out,
            "heartbeats_sent_total",
            "Heartbeats sent.",
            c(&self.heartbeats_sent),
        );
        counter(
            out,
            "client_connections_total",
            "Client connections accepted.",
            c(&self.client_connections),
        );
    }
}
