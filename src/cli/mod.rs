//! The command line: `ringkv node | up | status | scenario | leave | forget |
//! backup | restore`.
//!
//! Parsing is clap's; each subcommand's work lives in its own module. Node
//! flags become config overrides, applied after the file and the
//! environment, so a flag and the matching `RINGKV_*` variable and TOML key
//! are one and the same setting with one parser and one error message.

pub mod backup;
pub mod http;
pub mod ops;
pub mod scenario;
pub mod status;
pub mod up;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::tls::client::CliTls;

/// ringkv: a leaderless replicated key-value cluster that speaks RESP.
#[derive(Debug, Parser)]
#[command(name = "ringkv", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run one node in the foreground.
    Node(NodeArgs),
    /// Start a local cluster of N node processes and stay in the foreground.
    Up(UpArgs),
    /// Show the routing table as one node sees it.
    Status(StatusArgs),
    /// Run a scenario script against a fresh local cluster (docs/scenarios.md).
    Scenario(ScenarioArgs),
    /// Make a live node leave the cluster: it hands what it holds to the
    /// nodes that take over its ranges, then stops; the others forget it.
    Leave(AdminArgs),
    /// Forget a node that is down for good: the survivors re-replicate its
    /// ranges and stop heartbeating it.
    Forget(ForgetArgs),
    /// Stream a consistent backup of one live node into a new directory
    /// (README, "Backing up").
    Backup(BackupArgs),
    /// Prepare a node's empty data directory from a backup.
    Restore(RestoreArgs),
}

/// Flags of `ringkv backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Admin address of the node to back up.
    #[arg(long, default_value = "127.0.0.1:7201")]
    pub admin: String,
    /// The directory to write (new, or empty).
    pub dir: PathBuf,
    /// TLS to the admin port.
    #[command(flatten)]
    pub tls: AdminTlsArgs,
}

/// Flags of `ringkv restore`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["admin", "whole_cluster"])))]
pub struct RestoreArgs {
    /// The backup directory (`ringkv backup`'s DIR).
    pub dir: PathBuf,
    /// The data directory to prepare (new, or empty).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Admin address of a live node of the cluster the node rejoins: the
    /// backup must be of that cluster, the node must be down there, and the
    /// backup younger than its tombstone grace period.
    #[arg(long)]
    pub admin: Option<String>,
    /// Every node of the cluster is being restored from backups (none runs).
    #[arg(long)]
    pub whole_cluster: bool,
    /// TLS to the admin port.
    #[command(flatten)]
    pub tls: AdminTlsArgs,
}

/// Flags of `ringkv leave`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin address of the node that leaves.
    #[arg(long, default_value = "127.0.0.1:7201")]
    pub admin: String,
    /// TLS to the admin port.
    #[command(flatten)]
    pub tls: AdminTlsArgs,
}

/// Flags of `ringkv forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The node to forget (it must be down).
    pub name: String,
    /// Admin address of any live node of the cluster.
    #[arg(long, default_value = "127.0.0.1:7201")]
    pub admin: String,
    /// TLS to the admin port.
    #[command(flatten)]
    pub tls: AdminTlsArgs,
}

/// How the CLI reaches an admin port that speaks HTTPS (`tls_admin`):
/// redis-cli's flags.
#[derive(Debug, Args)]
pub struct AdminTlsArgs {
    /// Speak HTTPS to the admin port.
    #[arg(long)]
    pub tls: bool,
    /// The CA that signed the node's certificate (PEM).
    #[arg(long, requires = "tls")]
    pub cacert: Option<PathBuf>,
    /// A client certificate to present (PEM; needed for leave, forget and
    /// backup when the node runs with `tls_auth_clients = yes`).
    #[arg(long, requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, requires_all = ["tls", "cert"])]
    pub key: Option<PathBuf>,
}

impl AdminTlsArgs {
    fn cli_tls(&self) -> Result<CliTls> {
        CliTls::admin_from_flags(
            self.tls,
            self.cacert.as_deref(),
            self.cert.as_deref(),
            self.key.as_deref(),
        )
    }
}

/// The settings in `flags`, `ringkv node`'s flags (as `up` and `scenario`
/// pass after `--`), over `RINGKV_*` and the defaults.
pub fn node_flags_config(flags: &[String]) -> Result<Config> {
    #[derive(Debug, Parser)]
    #[command(no_binary_name = true)]
    struct Flags {
        #[command(flatten)]
        node: NodeArgs,
    }
    let flags = Flags::try_parse_from(flags)
        .map_err(|e| Error::invalid(format!("node flags: {}", e.to_string().trim())))?;
    flags.node.config()
}

impl Cli {
    /// Chooses, once for this process, how the command reaches nodes'
    /// admin and client ports: plain, or TLS (see `tls::client`).
    pub fn install_tls(&self) -> Result<()> {
        let tls = match &self.cmd {
            Cmd::Node(_) => return Ok(()),
            Cmd::Up(a) => CliTls::from_node_config(&node_flags_config(&a.node_flags)?)?,
            Cmd::Scenario(a) => CliTls::from_node_config(&node_flags_config(&a.node_flags)?)?,
            Cmd::Status(a) => a.tls.cli_tls()?,
            Cmd::Leave(a) => a.tls.cli_tls()?,
            Cmd::Forget(a) => a.tls.cli_tls()?,
            Cmd::Backup(a) => a.tls.cli_tls()?,
            Cmd::Restore(a) => a.tls.cli_tls()?,
        };
        crate::tls::client::install(tls);
        Ok(())
    }
}

/// Flags of `ringkv node`. Every setting can also come from `--config` or a
/// `RINGKV_<KEY>` environment variable (see config/ringkv.toml).
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TOML config file (every key documented in config/ringkv.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Unique node name; its ring token is SHA-1(NAME).
    #[arg(long)]
    pub name: Option<String>,
    /// RESP listener address (client traffic).
    #[arg(long)]
    pub client: Option<String>,
    /// Node-to-node listener address.
    #[arg(long)]
    pub peer: Option<String>,
    /// Peer address others should use (containers).
    #[arg(long)]
    pub advertise: Option<String>,
    /// HTTP listener (status, metrics, health).
    #[arg(long)]
    pub admin: Option<String>,
    /// Peer addresses to heartbeat from the start, comma-separated (host names allowed).
    #[arg(long)]
    pub seeds: Option<String>,
    /// Where the node keeps its data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Shared secret every peer must prove (also RINGKV_CLUSTER_SECRET).
    #[arg(long)]
    pub cluster_secret: Option<String>,
    /// Password clients must AUTH with, as in Redis.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Accept the scenario runner's fault commands (off by default).
    #[arg(long)]
    pub fault_injection: bool,
    /// Any other setting, as KEY=VALUE (repeatable), e.g. --set heartbeat_interval_ms=50.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl NodeArgs {
    /// The config: defaults, then the file, then `RINGKV_*`, then flags.
    pub fn config(&self) -> Result<Config> {
        let base = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let mut overrides = Config::env_overrides();
        let flags = [
            ("name", self.name.clone()),
            ("client", self.client.clone()),
            ("peer", self.peer.clone()),
            ("advertise", self.advertise.clone()),
            ("admin", self.admin.clone()),
            ("seeds", self.seeds.clone()),
            (
                "data_dir",
                self.data_dir.as_ref().map(|p| p.display().to_string()),
            ),
            ("cluster_secret", self.cluster_secret.clone()),
            ("requirepass", self.requirepass.clone()),
            (
                "fault_injection",
                self.fault_injection.then(|| "true".to_string()),
            ),
        ];
        overrides.extend(
            flags
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v))),
        );
        for pair in &self.set {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| Error::config("set", format!("`{pair}` is not KEY=VALUE")))?;
            overrides.push((k.trim().to_string(), v.to_string()));
        }
        let cfg = base.with_overrides(overrides)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Flags of `ringkv up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// How many nodes (named n1..nN).
    #[arg(long, default_value_t = 5, conflicts_with = "names")]
    pub nodes: usize,
    /// Node names, comma-separated, instead of n1..nN.
    #[arg(long, value_delimiter = ',')]
    pub names: Option<Vec<String>>,
    /// Base port P: node i listens on P+i (client), P+100+i (peer), P+200+i (admin).
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Data root; node NAME keeps its data in DIR/NAME.
    #[arg(long, default_value = "./ringkv-data")]
    pub data_dir: PathBuf,
    /// Flags passed to every node (after `--`).
    #[arg(last = true)]
    pub node_flags: Vec<String>,
}

/// Flags of `ringkv status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Admin address of the node to ask.
    #[arg(long, default_value = "127.0.0.1:7201")]
    pub admin: String,
    /// Print the raw JSON of /status.
    #[arg(long)]
    pub json: bool,
    /// Redraw every half second, marking rows whose state changed.
    #[arg(long)]
    pub watch: bool,
    /// TLS to the admin port.
    #[command(flatten)]
    pub tls: AdminTlsArgs,
}

/// Flags of `ringkv scenario`.
#[derive(Debug, Args)]
#[command(after_help = scenario::TIMINGS_HELP)]
pub struct ScenarioArgs {
    /// The script (docs/scenarios.md describes the language).
    pub file: PathBuf,
    /// One JSON object per answer on stdout instead of readable lines.
    #[arg(long)]
    pub json: bool,
    /// Base port P: node i (in the order the script starts them) listens on
    /// P+i (client), P+100+i (peer), P+200+i (admin).
    #[arg(long, default_value_t = 24000)]
    pub base_port: u16,
    /// Data root; node NAME keeps its data in DIR/NAME and its log in
    /// DIR/NAME.log [default: a fresh temporary directory, removed after a
    /// successful run].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seed of the random node choice for requests that name no node
    /// [default: random, printed to stderr so a run can be replayed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Flags passed to every node after the runner's own (after `--`), e.g.
    /// `-- --set failure_timeout_ms=500`.
    #[arg(last = true)]
    pub node_flags: Vec<String>,
}
