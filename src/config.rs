//! Typed node configuration with documented defaults.
//!
//! Settings come, in rising precedence, from the defaults below, a TOML file
//! (`--config`), environment variables `RINGKV_<KEY>` (upper case, for
//! containers), and command-line flags. Every key is documented here and in
//! `config/ringkv.toml`. [`Config::validate`] refuses a bad combination with
//! an [`Error::Config`] that names the key, and the binary turns that into one
//! line on stderr and exit status 2.
//!
//! Environment overrides are applied generically: the config is turned into
//! a TOML table, each key whose `RINGKV_` variable is set is replaced by the
//! variable's value parsed as that key's type, and the table is read back.
//! A new setting therefore needs no extra code to be settable from the
//! environment.
//!
//! Deliberately left out: reloading settings at run time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::message::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// How `/metrics`-independent logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// When the commit log fsyncs (see the README's durability section).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Before every acknowledgement (group commit): survives machine crashes.
    Always,
    /// Every `fsync_interval_ms`: a machine crash loses at most about that much.
    Interval,
    /// Never by policy: the OS writes back in its own time.
    Never,
}

/// Everything a node needs to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Unique node name; its ring token is SHA-1(name). Default: "n1".
    pub name: String,
    /// RESP listener address. Default "127.0.0.1:7001".
    pub client: String,
    /// Node-to-node listener address. Default "127.0.0.1:7101".
    pub peer: String,
    /// Peer address others should use; defaults to `peer`.
    pub advertise: Option<String>,
    /// HTTP admin listener address. Default "127.0.0.1:7201".
    pub admin: String,
    /// Peer addresses to heartbeat from the start. Default: none.
    pub seeds: Vec<String>,
    /// Where the node keeps its data. Default "./ringkv-data/n1".
    pub data_dir: PathBuf,
    /// Shared secret every peer must prove. Default: none (any host that
    /// reaches the peer port can join; a warning is logged).
    pub cluster_secret: Option<String>,
    /// Password clients must AUTH with. Default: none.
    pub requirepass: Option<String>,
    /// Serve TLS, not plaintext, on the client port (see `tls`). Default
    /// false.
    pub tls_client: bool,
    /// Mutual TLS on the peer port: every peer must present a certificate
    /// from `tls_ca_cert_file`'s CA (see `tls/peer.rs`). Default false.
    pub tls_peers: bool,
    /// HTTPS on the admin port, with `tls_cert_file` and `tls_key_file`;
    /// its routes that act (leave, forget, backup) need a client
    /// certificate unless `tls_auth_clients = no` (see `tls/admin.rs`).
    /// Default false.
    pub tls_admin: bool,
    /// The node's certificate chain, PEM. Default: none.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `tls_cert_file`, PEM. Default: none.
    pub tls_key_file: Option<PathBuf>,
    /// The CA certificates client certificates must chain to, PEM.
    /// Default: none.
    pub tls_ca_cert_file: Option<PathBuf>,
    /// Whether TLS clients must present a certificate: `yes` (Redis's
    /// default), `optional` or `no`. Default "yes".
    pub tls_auth_clients: String,
    /// The oldest TLS version accepted: "1.2" or "1.3". Default "1.2".
    pub tls_min_version: String,
    /// Accept the scenario runner's fault commands. Default false.
    pub fault_injection: bool,
    /// Replicas per key (N). Default 3.
    pub replication: usize,
    /// Replies a read waits for (R). Default 2.
    pub read_quorum: usize,
    /// Acknowledgements a write waits for (W). Default 2.
    pub write_quorum: usize,
    /// Bytes a second that bulk streams (anti-entropy, hand-off, `ringkv
    /// leave`) may send from this node, all of them together, so that
    /// moving a node's data does not starve client traffic (Cassandra's
    /// stream throughput defaults to as much). 0: no limit. Default
    /// 25000000.
    pub stream_bytes_per_sec: u64,
    /// How long a node may be down before the others rebuild its replicas.
    /// Until then it keeps its place in the ranges replicas hold: nothing
    /// is copied to stand in for it, writes made meanwhile reach the
    /// nodes standing in for it (sloppy quorums) and are handed back when
    /// it returns, so an outage costs what was written during it. After
    /// it, the next nodes clockwise take over its ranges and are filled by
    /// anti-entropy. Elasticsearch's delayed allocation waits as long by
    /// default. Default 60000.
    pub rebuild_delay_ms: u64,
    /// Count only a key's home replicas (its first N nodes on the ring of
    /// every node known, up or down) toward R and W, never nodes standing
    /// in for them; a request that cannot reach enough fails with
    /// `-UNAVAILABLE`. A connection may choose with `RINGKV QUORUM R W
    /// strict|sloppy`. Default false (sloppy quorums, as the seed design).
    pub strict_quorums: bool,
    /// Ring tokens for a new data directory: 0 picks the default, 128
    /// (see `placement`). A data directory keeps the number it was made
    /// with, whatever this says later; one made before ringkv recorded it
    /// keeps 1. The scenario runner gives its nodes 1, the 2014 scripts'
    /// placement. Default 0.
    pub vnodes: usize,
    /// Interval between heartbeats to every known node and seed. Default 200.
    pub heartbeat_interval_ms: u64,
    /// Silence after which a node is marked down. Default 1000.
    pub failure_timeout_ms: u64,
    /// Deadline of one client request. Default 2000.
    pub request_timeout_ms: u64,
    /// A read first asks only as many replicas as its quorum needs (itself
    /// first when it holds the key); after this long without enough answers
    /// it asks the rest too. 0 asks every replica at once. Default 20.
    pub read_speculation_ms: u64,
    /// A read whose first R answers all find no such key asks one more
    /// replica (waiting up to `read_speculation_ms`, 20 ms if that is 0)
    /// before answering nil: right after a ring change the first replicas
    /// may not have been filled by anti-entropy yet while another holds the
    /// key. Costs a third more read messages for keys that do not exist;
    /// `false` answers nil on R misses (Riak's `notfound_ok`). Default true.
    pub confirm_misses: bool,
    /// How long tombstones are kept before they are purged. Default 86400 (24 h).
    pub tombstone_grace_secs: u64,
    /// How far a peer's wall clock may be from this node's, either way,
    /// before the peer is refused (its messages dropped, so it takes no
    /// part until its clock is fixed); also the furthest ahead a write's
    /// timestamp may be. Default 60000 (see docs/clocks.md for why).
    pub max_clock_skew_ms: u64,
    /// Bytes of stored data (INFO's `used_memory`) past which commands
    /// that may add data (Redis's `denyoom`: SET, HSET, SADD, INCR...) are
    /// refused with `-OOM`, as Redis's `noeviction` policy does; deletes
    /// and reads go on, expired keys are reclaimed first, and coordinators
    /// write around the node. 0: no limit. Default 0.
    pub maxmemory: u64,
    /// How far a peer's wall clock may be from this node's before this
    /// node warns (a log line, `/status`, the dashboard). Default 500.
    pub clock_warn_ms: u64,
    /// Largest peer frame accepted or sent. Default 64 MiB.
    pub max_frame_bytes: usize,
    /// Messages queued per peer before new ones are dropped. Default 65536.
    pub peer_queue_len: usize,
    /// The newest peer protocol version this node offers, from
    /// [`MIN_PROTOCOL_VERSION`] to [`PROTOCOL_VERSION`]. Lowering it makes
    /// the node speak as the previous release does (in a rolling upgrade,
    /// until every node runs the new binary). Default [`PROTOCOL_VERSION`].
    pub peer_protocol_max: u32,
    /// Largest key accepted. Default 64 KiB.
    pub max_key_bytes: usize,
    /// Largest value accepted. Default 16 MiB.
    pub max_value_bytes: usize,
    /// Commands a client connection may have in flight (pipelining). Default 256.
    pub max_inflight_per_conn: usize,
    /// Commands all client connections together may have in flight; past
    /// it, connections stop reading until one finishes. Default 4096.
    pub max_inflight_per_node: usize,
    /// Client connections at once; one more is told
    /// `-ERR max number of clients reached` and closed. Default 10000.
    pub max_clients: usize,
    /// Most elements in one RESP command array. Default 1048576.
    pub max_array_len: usize,
    /// Largest RESP bulk string (checked before allocating). Default 16 MiB.
    pub max_bulk_bytes: usize,
    /// Most bytes one incomplete client command may buffer. Default 64 MiB.
    pub max_request_bytes: usize,
    /// A client whose started command is still incomplete after this long
    /// is told so and closed (slowloris). Default 30000.
    pub incomplete_request_timeout_ms: u64,
    /// Entries per hand-off batch. Default 512.
    pub transfer_batch: usize,
    /// Period of the background anti-entropy round with each peer (jittered
    /// by +-20 %). Default 30000.
    pub anti_entropy_interval_ms: u64,
    /// A hash or set of this many bytes or more that differs between two
    /// replicas is compared and sent by sections (the pieces that differ),
    /// not whole, when both speak protocol 12. Default 65536.
    pub anti_entropy_sections_min_bytes: usize,
    /// Commit log fsync policy. Default interval.
    pub fsync: FsyncMode,
    /// fsync period under `fsync = "interval"`. Default 1000.
    pub fsync_interval_ms: u64,
    /// Commit log segment size. Default 64 MiB.
    pub log_segment_bytes: u64,
    /// Compact when the log exceeds this many times the live data... Default 2.
    pub compaction_factor: u64,
    /// ...and this many bytes. Default 64 MiB.
    pub compaction_min_bytes: u64,
    /// Runtime worker threads; 0 means one per core. Default 0. (`ringkv
    /// up` gives each of its N local nodes cores/N, at least 1: nodes that
    /// share a machine do better without cross-thread wake-ups.)
    pub worker_threads: usize,
    /// Log format. Default text.
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "n1".into(),
            client: "127.0.0.1:7001".into(),
            peer: "127.0.0.1:7101".into(),
            advertise: None,
            admin: "127.0.0.1:7201".into(),
            seeds: Vec::new(),
            data_dir: PathBuf::from("./ringkv-data/n1"),
            cluster_secret: None,
            requirepass: None,
            tls_client: false,
            tls_peers: false,
            tls_admin: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_cert_file: None,
            tls_auth_clients: "yes".into(),
            tls_min_version: "1.2".into(),
            fault_injection: false,
            replication: 3,
            read_quorum: 2,
            write_quorum: 2,
            stream_bytes_per_sec: 25_000_000,
            rebuild_delay_ms: 60_000,
            strict_quorums: false,
            vnodes: 0,
            heartbeat_interval_ms: 200,
            failure_timeout_ms: 1000,
            request_timeout_ms: 2000,
            read_speculation_ms: 20,
            confirm_misses: true,
            tombstone_grace_secs: 86_400,
            max_clock_skew_ms: 60_000,
            clock_warn_ms: 500,
            maxmemory: 0,
            max_frame_bytes: 64 * 1024 * 1024,
            peer_queue_len: 65_536,
            peer_protocol_max: PROTOCOL_VERSION,
            max_key_bytes: 64 * 1024,
            max_value_bytes: 16 * 1024 * 1024,
            max_inflight_per_conn: 256,
            max_inflight_per_node: 4096,
            max_clients: 10_000,
            max_array_len: 1_048_576,
            max_bulk_bytes: 16 * 1024 * 1024,
            max_request_bytes: 64 * 1024 * 1024,
            incomplete_request_timeout_ms: 30_000,
            transfer_batch: 512,
            anti_entropy_interval_ms: 30_000,
            anti_entropy_sections_min_bytes: 64 * 1024,
            fsync: FsyncMode::Interval,
            fsync_interval_ms: 1000,
            log_segment_bytes: 64 * 1024 * 1024,
            compaction_factor: 2,
            compaction_min_bytes: 64 * 1024 * 1024,
            worker_threads: 0,
            log_format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Defaults suited to tests: fast heartbeats and failure detection.
    pub fn for_test(name: &str) -> Self {
        Config {
            name: name.into(),
            heartbeat_interval_ms: 50,
            failure_timeout_ms: 300,
            ..Config::default()
        }
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config("config", format!("{}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| Error::config("config", format!("{}: {}", path.display(), e.message())))
    }

    /// Applies `KEY=VALUE` overrides (from `RINGKV_KEY` variables or
    /// `--set`), each parsed as the type of the key it replaces.
    pub fn with_overrides<I, K, V>(self, overrides: I) -> Result<Config>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut table =
            toml::Table::try_from(&self).map_err(|e| Error::config("config", e.to_string()))?;
        for (key, raw) in overrides {
            let key = key.as_ref().to_ascii_lowercase();
            if !table.contains_key(&key) && !OPTIONAL_KEYS.contains(&key.as_str()) {
                return Err(Error::config(
                    &key,
                    format!(
                        "unknown setting (from RINGKV_{} or --set); see config/ringkv.toml",
                        key.to_ascii_uppercase()
                    ),
                ));
            }
            let value = parse_override(&key, raw.as_ref(), table.get(&key))?;
            table.insert(key, value);
        }
        Config::deserialize(toml::Value::Table(table))
            .map_err(|e| Error::config("config", e.message().to_string()))
    }

    /// The `RINGKV_*` variables of the environment, as overrides.
    pub fn env_overrides() -> Vec<(String, String)> {
        std::env::vars()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("RINGKV_")?.to_ascii_lowercase();
                Some((key, v))
            })
            .collect()
    }

    /// Checks values and combinations; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("replication", self.replication as u64),
            ("read_quorum", self.read_quorum as u64),
            ("write_quorum", self.write_quorum as u64),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("peer_queue_len", self.peer_queue_len as u64),
            ("max_inflight_per_conn", self.max_inflight_per_conn as u64),
            ("max_inflight_per_node", self.max_inflight_per_node as u64),
            ("max_clients", self.max_clients as u64),
            ("max_array_len", self.max_array_len as u64),
            (
                "incomplete_request_timeout_ms",
                self.incomplete_request_timeout_ms,
            ),
            ("transfer_batch", self.transfer_batch as u64),
            ("anti_entropy_interval_ms", self.anti_entropy_interval_ms),
            ("fsync_interval_ms", self.fsync_interval_ms),
            ("compaction_factor", self.compaction_factor),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(Error::config(key, "must be at least 1"));
            }
        }
        crate::tls::validate(self)?;
        if self.vnodes > crate::placement::MAX_TOKENS {
            return Err(Error::config(
                "vnodes",
                format!("at most {}", crate::placement::MAX_TOKENS),
            ));
        }
        if self.name.is_empty() || self.name.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(Error::config(
                "name",
                "must be non-empty, without spaces or commas",
            ));
        }
        if self.read_quorum > self.replication {
            return Err(Error::config(
                "read_quorum",
                format!(
                    "{} exceeds replication {}",
                    self.read_quorum, self.replication
                ),
            ));
        }
        if self.write_quorum > self.replication {
            return Err(Error::config(
                "write_quorum",
                format!(
                    "{} exceeds replication {}",
                    self.write_quorum, self.replication
                ),
            ));
        }
        if self.failure_timeout_ms < 2 * self.heartbeat_interval_ms {
            return Err(Error::config(
                "failure_timeout_ms",
                format!(
                    "{} is under two heartbeat intervals ({} ms)",
                    self.failure_timeout_ms,
                    2 * self.heartbeat_interval_ms
                ),
            ));
        }
        if self.log_segment_bytes < 4096 {
            return Err(Error::config("log_segment_bytes", "must be at least 4096"));
        }
        if self.max_frame_bytes < 1024 {
            return Err(Error::config("max_frame_bytes", "must be at least 1024"));
        }
        if self.max_key_bytes + self.max_value_bytes + 1024 > self.max_frame_bytes {
            return Err(Error::config(
                "max_value_bytes",
                "key and value limits must fit in max_frame_bytes",
            ));
        }
        if self.max_bulk_bytes < self.max_key_bytes.max(self.max_value_bytes) {
            return Err(Error::config(
                "max_bulk_bytes",
                "must be at least max_key_bytes and max_value_bytes",
            ));
        }
        if self.max_request_bytes < self.max_bulk_bytes {
            return Err(Error::config(
                "max_request_bytes",
                "must be at least max_bulk_bytes",
            ));
        }
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&self.peer_protocol_max) {
            return Err(Error::config(
                "peer_protocol_max",
                format!(
                    "{} is not a protocol version this build speaks \
                     ({MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})",
                    self.peer_protocol_max
                ),
            ));
        }
        for (key, addr) in [
            ("client", &self.client),
            ("peer", &self.peer),
            ("admin", &self.admin),
        ] {
            if !addr.contains(':') {
                return Err(Error::config(key, format!("`{addr}` is not HOST:PORT")));
            }
        }
        Ok(())
    }

    /// The peer address others should use.
    pub fn advertise_addr(&self) -> &str {
        self.advertise.as_deref().unwrap_or(&self.peer)
    }

    /// The commit log settings.
    pub fn log_options(&self) -> crate::log::LogOptions {
        use crate::log::FsyncPolicy;
        crate::log::LogOptions {
            fsync: match self.fsync {
                FsyncMode::Always => FsyncPolicy::Always,
                FsyncMode::Interval => {
                    FsyncPolicy::Interval(Duration::from_millis(self.fsync_interval_ms))
                }
                FsyncMode::Never => FsyncPolicy::Never,
            },
            segment_bytes: self.log_segment_bytes,
            ..crate::log::LogOptions::default()
        }
    }

    /// `heartbeat_interval_ms` as a Duration.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// `failure_timeout_ms` as a Duration.
    pub fn failure_timeout(&self) -> Duration {
        Duration::from_millis(self.failure_timeout_ms)
    }

    /// `request_timeout_ms` as a Duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// `read_speculation_ms` as a Duration; `None` asks every replica at once.
    pub fn read_speculation(&self) -> Option<Duration> {
        (self.read_speculation_ms > 0).then(|| Duration::from_millis(self.read_speculation_ms))
    }
}

/// Settings whose default is "unset", so they are absent from a
/// serialized default config.
const OPTIONAL_KEYS: [&str; 6] = [
    "advertise",
    "cluster_secret",
    "requirepass",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_cert_file",
];

fn parse_override(key: &str, raw: &str, current: Option<&toml::Value>) -> Result<toml::Value> {
    use toml::Value;
    let bad = |what: &str| Error::config(key, format!("`{raw}` is not {what}"));
    Ok(match current {
        Some(Value::Integer(_)) => {
            Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?)
        }
        Some(Value::Boolean(_)) => Value::Boolean(match raw.trim() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return Err(bad("a boolean")),
        }),
        Some(Value::Array(_)) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        // Strings, optional strings (absent from the table) and paths.
        _ => Value::String(raw.to_string()),
    })
}

#[cfg(test)]
mod tests;
