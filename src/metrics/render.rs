//! How [`Metrics`](super::Metrics) and the values sampled at scrape time
//! become OpenMetrics text.
//!
//! This is the only part of `metrics` that knows about the
//! `prometheus-client` crate. It exists apart from the counters so that the
//! hot-path module stays small and lock-free by construction: the encoder
//! adapters here (`Counters`, `Gauges`, `Histograms`) copy plain numbers
//! out of the atomics once per scrape and hand them to the crate's
//! [`EncodeMetric`] machinery, which writes names, types, help and `# EOF`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Cmd, Histogram, HistogramSnapshot, Metrics, Outcome, PeerCounters};
use super::{MEMBERSHIP_KINDS, PEER_KINDS};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything [`render`] reads besides [`Metrics`]: values sampled at
/// scrape time by the admin server.
#[derive(Debug, Default)]
pub struct Sampled<'a> {
    /// Plain counters: (name without `_total`, help, value).
    pub counters: Vec<(&'static str, &'static str, u64)>,
    /// Gauges: (name, help, value).
    pub gauges: Vec<(&'static str, &'static str, f64)>,
    /// Peer traffic by kind.
    pub peer: Option<&'a PeerCounters>,
    /// Commit log fsync latency.
    pub fsync: Option<&'a Histogram>,
    /// Anti-entropy counters per peer.
    pub anti_entropy: Vec<(String, crate::anti_entropy::PeerStats)>,
    /// Estimated offset of each peer's wall clock from this node's, in
    /// seconds (peer minus this node).
    pub clock_offsets: Vec<(String, f64)>,
    /// Each node's share of the replicas over the mean, in this node's
    /// view (1.0: balanced).
    pub balance: Vec<(String, f64)>,
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
struct Counters(Vec<(Labels, u64)>);

impl EncodeMetric for Counters {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, v) in &self.0 {
            if labels.is_empty() {
                encoder.encode_counter::<NoLabelSet, _, u64>(v, None)?;
            } else {
                encoder
                    .encode_family(labels)?
                    .encode_counter::<NoLabelSet, _, u64>(v, None)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[derive(Debug)]
struct Gauges(Vec<(Labels, f64)>);

impl EncodeMetric for Gauges {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, v) in &self.0 {
            encoder.encode_family(labels)?.encode_gauge(v)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[derive(Debug)]
struct Histograms(Vec<(Labels, HistogramSnapshot)>);

impl EncodeMetric for Histograms {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, h) in &self.0 {
            // The encoder sums the buckets itself: hand it per-bucket counts.
            let mut below = 0;
            let own: Vec<(f64, u64)> = h
                .buckets
                .iter()
                .map(|&(bound, cumulative)| {
                    (
                        bound,
                        cumulative - std::mem::replace(&mut below, cumulative),
                    )
                })
                .collect();
            if labels.is_empty() {
                encoder.encode_histogram::<NoLabelSet>(h.sum, h.count, &own, None)?;
            } else {
                encoder
                    .encode_family(labels)?
                    .encode_histogram::<NoLabelSet>(h.sum, h.count, &own, None)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn labelled<const N: usize>(
    key: &'static str,
    names: &[&'static str],
    values: &[AtomicU64; N],
) -> Counters {
    Counters(
        names
            .iter()
            .zip(values)
            .map(|(n, v)| (vec![(key, n.to_string())], v.load(Relaxed)))
            .collect(),
    )
}

/// Per-peer anti-entropy families: rounds, failures, keys and bytes each
/// way, and the time of the last full agreement.
fn register_anti_entropy(reg: &mut Registry, peers: &[(String, crate::anti_entropy::PeerStats)]) {
    type Field = fn(&crate::anti_entropy::PeerStats) -> u64;
    let families: [(&str, &str, Field); 6] = [
        (
            "anti_entropy_rounds",
            "Anti-entropy rounds completed, by peer",
            |s| s.rounds,
        ),
        (
            "anti_entropy_failed_rounds",
            "Anti-entropy rounds that failed, by peer",
            |s| s.failed_rounds,
        ),
        (
            "anti_entropy_keys_sent",
            "Entries sent by anti-entropy, by peer",
            |s| s.keys_sent,
        ),
        (
            "anti_entropy_keys_received",
            "Entries received by anti-entropy, by peer",
            |s| s.keys_received,
        ),
        (
            "anti_entropy_bytes_sent",
            "Anti-entropy bytes sent, by peer",
            |s| s.bytes_sent,
        ),
        (
            "anti_entropy_bytes_received",
            "Anti-entropy bytes received, by peer",
            |s| s.bytes_received,
        ),
    ];
    for (name, help, field) in families {
        let values = peers
            .iter()
            .map(|(p, s)| (vec![("peer", p.clone())], field(s)))
            .collect();
        reg.register(name, help, Counters(values));
    }
    let agreed = peers
        .iter()
        .filter_map(|(p, s)| {
            s.last_agreement_unix_ms
                .map(|ms| (vec![("peer", p.clone())], ms as f64 / 1000.0))
        })
        .collect();
    reg.register(
        "anti_entropy_last_agreement_timestamp_seconds",
        "When a round with the peer last ended in agreement (Unix time)",
        Gauges(agreed),
    );
}

/// Renders every metric as OpenMetrics text (see [`CONTENT_TYPE`]).
pub fn render(m: &Metrics, sampled: Sampled<'_>) -> String {
    let mut reg = Registry::with_prefix("ringkv");
    // The encoder ends every help text with a period of its own.
    let plain = |v: &AtomicU64| Counters(vec![(Vec::new(), v.load(Relaxed))]);
    let simple: [(&str, &str, &AtomicU64); 19] = [
        ("commands", "Client commands executed", &m.commands),
        (
            "command_errors",
            "Client commands answered with an error",
            &m.command_errors,
        ),
        ("reads_ok", "Quorum reads that succeeded", &m.reads_ok),
        ("reads_failed", "Quorum reads that failed", &m.reads_failed),
        ("writes_ok", "Quorum writes that succeeded", &m.writes_ok),
        (
            "writes_failed",
            "Quorum writes that failed",
            &m.writes_failed,
        ),
        (
            "read_repairs",
            "Stale replicas repaired after a read",
            &m.read_repairs,
        ),
        (
            "read_speculations",
            "Reads that asked the remaining replicas after read_speculation_ms",
            &m.read_speculations,
        ),
        (
            "read_miss_confirmations",
            "Reads whose first R answers found no such key and that asked one more replica",
            &m.read_miss_confirmations,
        ),
        (
            "membership_changes",
            "Membership changes that altered the ring",
            &m.membership_changes,
        ),
        (
            "handoff_entries",
            "Entries handed to other nodes after ring changes",
            &m.handoff_entries,
        ),
        (
            "handoff_dropped",
            "Local copies dropped after hand-off",
            &m.handoff_dropped,
        ),
        (
            "handoff_sent",
            "Entries sent by hand-off and by leave streams, those the replicas offered them wanted",
            &m.handoff_sent,
        ),
        (
            "heartbeats_sent",
            "Heartbeat messages sent",
            &m.heartbeats_sent,
        ),
        (
            "heartbeats_missed",
            "Per heartbeat interval, known members silent for more than two intervals",
            &m.heartbeats_missed,
        ),
        (
            "client_connections",
            "Client connections accepted",
            &m.client_connections,
        ),
        (
            "rmw_conflicts",
            "Read-modify-write commands whose write found, on some replica, a version newer than the one they read",
            &m.rmw_conflicts,
        ),
        (
            "expired_reclaimed",
            "Expired keys reduced to tombstones once past their deadline by more than the clock tolerance",
            &m.expired_reclaimed,
        ),
        (
            "read_part_mismatches",
            "Reads of a few hash fields or set members whose replicas held different wholes, so the whole key was read",
            &m.read_part_mismatches,
        ),
    ];
    for (name, help, v) in simple {
        reg.register(name, help.trim_end_matches('.'), plain(v));
    }
    let mut requests = Vec::new();
    let mut latency = Vec::new();
    // Commands never called are left out, but for GET and SET, so that
    // dashboards always find the two that matter most.
    for cmd in Cmd::all() {
        let always = matches!(cmd.label(), "get" | "set");
        let h = m.latency(cmd);
        if h.count() == 0 && !always {
            continue;
        }
        for outcome in Outcome::ALL {
            let labels = vec![
                ("command", cmd.label().to_string()),
                ("outcome", outcome.label().to_string()),
            ];
            requests.push((labels, m.requests(cmd, outcome)));
        }
        latency.push((vec![("command", cmd.label().to_string())], h.snapshot()));
    }
    reg.register(
        "requests",
        "Client commands by command and outcome",
        Counters(requests),
    );
    reg.register(
        "request_duration_seconds",
        "Client command latency, from read to reply ready",
        Histograms(latency),
    );
    let ops = ["read", "write"];
    reg.register(
        "replica_acks",
        "Replica answers received by coordinators in time",
        labelled("op", &ops, &m.replica_acks),
    );
    reg.register(
        "replica_timeouts",
        "Replicas that had not answered when a request hit its deadline",
        labelled("op", &ops, &m.replica_timeouts),
    );
    reg.register(
        "membership_events",
        "Membership events by kind",
        labelled("event", &MEMBERSHIP_KINDS, &m.membership_events),
    );
    reg.register(
        "handoff_rounds",
        "Hand-off rounds, by whether every transfer was acknowledged",
        labelled("result", &["complete", "incomplete"], &m.handoff_rounds),
    );
    if let Some(p) = sampled.peer {
        reg.register(
            "peer_messages_sent_by_kind",
            "Peer messages written to sockets, by kind",
            labelled("kind", &PEER_KINDS, &p.sent),
        );
        reg.register(
            "peer_bytes_sent_by_kind",
            "Peer bytes written to sockets, by message kind",
            labelled("kind", &PEER_KINDS, &p.sent_bytes),
        );
        reg.register(
            "peer_messages_received_by_kind",
            "Peer messages received, by kind",
            labelled("kind", &PEER_KINDS, &p.received),
        );
    }
    if let Some(h) = sampled.fsync {
        reg.register(
            "log_fsync_duration_seconds",
            "Commit log fsync latency",
            Histograms(vec![(Vec::new(), h.snapshot())]),
        );
    }
    register_anti_entropy(&mut reg, &sampled.anti_entropy);
    reg.register(
        "peer_clock_offset_seconds",
        "Estimated offset of the peer's wall clock from this node's (peer minus this node)",
        Gauges(
            sampled
                .clock_offsets
                .iter()
                .map(|(p, v)| (vec![("peer", p.clone())], *v))
                .collect(),
        ),
    );
    reg.register(
        "ring_balance",
        "Each node's share of the replicas over the mean, in this node's view (1 is balanced)",
        Gauges(
            sampled
                .balance
                .iter()
                .map(|(n, v)| (vec![("node", n.clone())], *v))
                .collect(),
        ),
    );
    for (name, help, v) in sampled.counters {
        reg.register(
            name,
            help.trim_end_matches('.'),
            Counters(vec![(Vec::new(), v)]),
        );
    }
    reg.register(
        "handoff_backlog",
        "Strays held for a replica that is down, within its rebuild delay",
        ConstGauge::new(m.handoff_backlog.load(Relaxed) as i64),
    );
    for (name, help, v) in sampled.gauges {
        reg.register(name, help.trim_end_matches('.'), ConstGauge::new(v));
    }
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    let _infallible = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn render_names_and_types() {
        let m = Metrics::default();
        m.request(Cmd::of(b"GET"), Outcome::Ok, Duration::from_millis(2));
        let text = render(&m, Sampled::default());
        assert!(text.contains("# TYPE ringkv_requests counter"));
        assert!(text.contains("ringkv_requests_total{command=\"get\",outcome=\"ok\"} 1"));
        assert!(text.contains("# TYPE ringkv_request_duration_seconds histogram"));
        assert!(
            text.contains("ringkv_request_duration_seconds_bucket{le=\"+Inf\",command=\"get\"} 1")
        );
        assert!(text.contains("ringkv_commands_total 0"));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
