//! Scenario scripts: replay a failure story against a real local cluster.
//!
//! A scenario (`docs/scenarios.md`) starts nodes, reads and writes, cuts
//! and heals the network, drops and delays messages. `ringkv scenario FILE`
//! runs one against node processes it starts itself, so a failure can be
//! replayed in seconds without root or containers, and the test suite can
//! assert on what the reads returned.
//!
//! - [`parse`]: the language, with line-numbered errors, and the name check
//!   made before anything starts.
//! - `cluster`: the node processes (one `ringkv node --fault-injection` per
//!   script node, on ports laid out like `ringkv up`'s), their unasked
//!   deaths, and the fault commands sent to their admin ports.
//! - `runner`: the steps in order, `after` blocks as concurrent tasks, the
//!   first failure ending the run.
//! - `process`: one node process, watched for an exit nobody asked for.
//! - `client`: one RESP request with a deadline. `output`: the answer
//!   lines, readable or JSON.
//!
//! Why real processes rather than in-process nodes: a scenario then tests
//! exactly what users run, `kill` is a real SIGKILL that loses whatever the
//! commit log had not made durable, and the faults are applied where a real
//! network fault would hit, in each node's peer transport. The price is a
//! few milliseconds per start and timings that depend on the machine, which
//! is why the runner's nodes heartbeat every 25 ms and declare a silent peer
//! down after 300 ms ([`cluster::TIMINGS`]): a healed partition is noticed
//! within one heartbeat, and twelve missed heartbeats are needed before a
//! busy machine makes a node look dead.
//!
//! Deliberately left out: running scripts against an already running
//! cluster (the runner owns its nodes, so it can kill and restart them and
//! knows every address), per-node `delay`, and any retry of a request: an
//! answer is reported as it came.

pub mod cluster;
pub mod parse;
pub mod runner;

mod client;
mod output;
mod process;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::mpsc;

pub use output::{Answer, Op, Outcome, Printer};

use self::cluster::{Cluster, Timings};
use self::parse::{Command, ParseError, Script};
use self::runner::Runner;

/// Why a run did not reach the end of its script.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The script does not parse or names unknown nodes; nothing started.
    #[error("{0}")]
    Script(#[from] ParseError),
    /// The runner's own settings are unusable (ports, data directory);
    /// nothing started.
    #[error("{0}")]
    Setup(String),
    /// The cluster failed during the run: a node did not start, died
    /// unasked, or refused a fault. Every node has been stopped.
    #[error("{0}")]
    Failed(String),
}

impl RunError {
    /// The same error, prefixed with the script line it happened on.
    pub fn at_line(self, line: usize) -> RunError {
        match self {
            RunError::Failed(why) if !why.starts_with("line ") => {
                RunError::Failed(format!("line {line}: {why}"))
            }
            other => other,
        }
    }

    /// The exit status for it: 2 for a script or setup error, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Script(_) | RunError::Setup(_) => 2,
            RunError::Failed(_) => 1,
        }
    }
}

impl From<std::io::Error> for RunError {
    fn from(e: std::io::Error) -> Self {
        RunError::Failed(format!("io: {e}"))
    }
}

impl From<crate::error::Error> for RunError {
    fn from(e: crate::error::Error) -> Self {
        RunError::Failed(e.to_string())
    }
}

/// How to run a script.
#[derive(Clone, Debug)]
pub struct Options {
    /// JSON lines instead of readable ones.
    pub json: bool,
    /// Node i (1-based, in the order the script starts them) listens on
    /// client port P+i, peer P+100+i, admin P+200+i.
    pub base_port: u16,
    /// Data root (DIR/NAME, logs in DIR/NAME.log); `None`: a fresh
    /// temporary directory, removed after a run that succeeds.
    pub data_dir: Option<PathBuf>,
    /// Seed of the random node choice.
    pub seed: u64,
    /// Extra flags for every node, after the runner's own.
    pub node_flags: Vec<String>,
    /// Node timings.
    pub timings: Timings,
}

/// Node names in the order the script first starts them.
pub fn start_order(script: &Script) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for step in script.all_steps() {
        if let Command::Start { name, .. } = &step.cmd {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// How long the runner waits for one answer: three node request deadlines,
/// so that the node's own "too few replicas" error always arrives first.
pub fn answer_deadline(timings: &Timings) -> Duration {
    Duration::from_millis(3 * timings.request_ms)
}

/// Checks `script`, starts its cluster, runs it to the end, and stops
/// every node, whatever happened.
pub async fn run(script: &Script, opts: Options) -> Result<(), RunError> {
    script.check_names()?;
    let names = start_order(script);
    let (dir, temporary) = match &opts.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (fresh_temp_dir(), true),
    };
    let specs = cluster::plan(&names, opts.base_port, &dir)?;
    if let Some(used) = specs.iter().find(|s| s.data_dir.exists()) {
        return Err(RunError::Setup(format!(
            "--data-dir: {} already exists (an earlier run?); remove it or choose another directory",
            used.data_dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|e| {
        RunError::Setup(format!("--data-dir: cannot create {}: {e}", dir.display()))
    })?;
    eprintln!(
        "scenario: seed {} (replay with --seed {}); data and logs in {}",
        opts.seed,
        opts.seed,
        dir.display()
    );
    let (deaths_tx, mut deaths) = mpsc::unbounded_channel();
    let rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let cluster = Cluster::new(specs, opts.node_flags, opts.timings, rng, deaths_tx);
    let printer = Printer { json: opts.json };
    let runner = Arc::new(Runner::new(
        cluster,
        printer,
        answer_deadline(&opts.timings),
    ));
    let outcome = runner
        .clone()
        .drive(script.steps.clone(), &mut deaths)
        .await;
    runner.cluster.stop_all().await;
    match (&outcome, temporary) {
        (Ok(()), true) => {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                eprintln!("scenario: could not remove {}: {e}", dir.display());
            }
        }
        (Err(_), _) => eprintln!("scenario: logs kept in {}", dir.display()),
        (Ok(()), false) => {}
    }
    outcome
}

/// A new directory name under the system's temporary directory.
fn fresh_temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("ringkv-scenario-{}-{nanos}", std::process::id()))
}
