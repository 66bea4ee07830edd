//! The runner's cluster: one real `ringkv node` process per script node.
//!
//! Every node the script starts gets fixed ports from its place in the
//! script (the order of first `start` lines, like `ringkv up`'s order of
//! names): client P+i, peer P+100+i, admin P+200+i, data in DIR/NAME and its
//! log (stdout and stderr, appended across restarts) in DIR/NAME.log. A node
//! runs the current executable with fault injection on and the fast timings
//! of [`Timings`].
//!
//! Each process is a `Proc` (see `process`): watched for an exit the
//! runner did not ask for, which fails the run.
//!
//! Faults are sent to the nodes' admin ports as the transport's
//! [`FaultCommand`] JSON. Splits are remembered and replayed to a node that
//! starts while they stand, so a restarted node is on the right island.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::process::{log_tail, Proc};
use super::RunError;
use crate::admin::{NodeStatus, Status};
use crate::cli::http;
use crate::membership::State as MemberState;
use crate::transport::fault::FaultCommand;

/// How long a started node gets to answer `/health`.
pub const START_LIMIT: Duration = Duration::from_secs(15);
/// Deadline of one fault command to one node.
const FAULT_LIMIT: Duration = Duration::from_secs(2);

/// The settings every scenario node gets (the runner's defaults; flags
/// after `--` on the command line come later and win).
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// `heartbeat_interval_ms`.
    pub heartbeat_ms: u64,
    /// `failure_timeout_ms`.
    pub failure_ms: u64,
    /// `request_timeout_ms`: the node's own deadline for a quorum.
    pub request_ms: u64,
}

/// The runner's timings: a healed partition is seen within one heartbeat
/// (25 ms), and a cut-off node is declared down after 300 ms, twelve missed
/// heartbeats, so that live nodes on a busy two-core machine do not flap
/// (at 200 ms, three test suites at once made silences of 360 ms).
pub const TIMINGS: Timings = Timings {
    heartbeat_ms: 25,
    failure_ms: 300,
    request_ms: 1000,
};

/// Where one node listens and keeps its data.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Its name.
    pub name: String,
    /// RESP address.
    pub client: String,
    /// Peer address.
    pub peer: String,
    /// Admin address.
    pub admin: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
}

#[derive(Default)]
struct Slot {
    proc: Option<Proc>,
    /// The `--peer-names` of its `start`, kept for `restart`.
    peers: Vec<String>,
}

/// The nodes of one scenario run.
pub struct Cluster {
    specs: Vec<NodeSpec>,
    slots: Mutex<Vec<Slot>>,
    splits: Mutex<BTreeMap<String, Vec<String>>>,
    /// Serialises start, stop, kill and restart across concurrent blocks.
    lifecycle: tokio::sync::Mutex<()>,
    node_flags: Vec<String>,
    timings: Timings,
    deaths: mpsc::UnboundedSender<String>,
    rng: Mutex<StdRng>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; a poisoned one is still valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `127.0.0.1:(base + offset + i + 1)`, or a config error if out of range.
fn addr(base: u16, offset: u16, i: usize) -> Result<String, RunError> {
    let port = u32::from(base) + u32::from(offset) + i as u32 + 1;
    if port > 65_535 {
        let why = format!("port {port} (node {}) is out of range", i + 1);
        return Err(RunError::Setup(format!("--base-port: {why}")));
    }
    Ok(format!("127.0.0.1:{port}"))
}

/// The addresses and directories of `names`, in order, under `dir`.
pub fn plan(names: &[String], base_port: u16, dir: &Path) -> Result<Vec<NodeSpec>, RunError> {
    if names.len() > 99 {
        let why = format!("{} nodes; at most 99 fit the port layout", names.len());
        return Err(RunError::Setup(why));
    }
    let specs = names.iter().enumerate().map(|(i, name)| {
        Ok(NodeSpec {
            name: name.clone(),
            client: addr(base_port, 0, i)?,
            peer: addr(base_port, 100, i)?,
            admin: addr(base_port, 200, i)?,
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
        })
    });
    specs.collect()
}

impl Cluster {
    /// A cluster of `specs`, none started. Unexpected exits are sent to `deaths`.
    pub fn new(
        specs: Vec<NodeSpec>,
        node_flags: Vec<String>,
        timings: Timings,
        rng: StdRng,
        deaths: mpsc::UnboundedSender<String>,
    ) -> Self {
        let slots = specs.iter().map(|_| Slot::default()).collect();
        Cluster {
            specs,
            slots: Mutex::new(slots),
            splits: Mutex::new(BTreeMap::new()),
            lifecycle: tokio::sync::Mutex::new(()),
            node_flags,
            timings,
            deaths,
            rng: Mutex::new(rng),
        }
    }

    fn index(&self, name: &str) -> Result<usize, RunError> {
        (self.specs.iter().position(|s| s.name == name))
            .ok_or_else(|| RunError::Failed(format!("unknown node `{name}`")))
    }

    /// The spec of node `name`.
    pub fn spec(&self, name: &str) -> Result<&NodeSpec, RunError> {
        Ok(&self.specs[self.index(name)?])
    }

    /// Whether `name` has a live process.
    pub fn is_running(&self, name: &str) -> bool {
        let Ok(i) = self.index(name) else {
            return false;
        };
        lock(&self.slots)[i]
            .proc
            .as_ref()
            .is_some_and(|p| p.exited.borrow().is_none())
    }

    /// Running nodes, in port order.
    pub fn running(&self) -> Vec<String> {
        let names = self.specs.iter().map(|s| s.name.clone());
        names.filter(|n| self.is_running(n)).collect()
    }

    /// A running node chosen with the run's seeded generator.
    pub fn pick_running(&self) -> Option<String> {
        let running = self.running();
        running.choose(&mut *lock(&self.rng)).cloned()
    }

    /// Starts `name` with `peers` as seeds (remembered for `restart`) and
    /// returns once it serves and has joined (see `await_joined`). A
    /// running node is left alone.
    pub async fn start(&self, name: &str, peers: &[String]) -> Result<(), RunError> {
        let _one_at_a_time = self.lifecycle.lock().await;
        let i = self.index(name)?;
        for peer in peers {
            self.index(peer)?;
        }
        lock(&self.slots)[i].peers = peers.to_vec();
        if self.is_running(name) {
            eprintln!("scenario: start {name}: already running; left alone");
            return Ok(());
        }
        self.launch(i).await
    }

    /// Starts `name` again on its own data, stopping it first if it runs.
    pub async fn restart(&self, name: &str) -> Result<(), RunError> {
        let _one_at_a_time = self.lifecycle.lock().await;
        let i = self.index(name)?;
        if self.is_running(name) {
            self.halt(i, libc::SIGTERM).await;
        }
        self.launch(i).await
    }

    /// SIGTERM (`stop`) or SIGKILL (`kill`), then waits for the exit.
    pub async fn signal(&self, name: &str, signal: libc::c_int) -> Result<(), RunError> {
        let _one_at_a_time = self.lifecycle.lock().await;
        let i = self.index(name)?;
        if !self.is_running(name) {
            eprintln!("scenario: {name} is not running; nothing to stop");
            return Ok(());
        }
        self.halt(i, signal).await;
        Ok(())
    }

    async fn launch(&self, i: usize) -> Result<(), RunError> {
        let spec = &self.specs[i];
        let peers = lock(&self.slots)[i].peers.clone();
        let seeds: Vec<&str> = (peers.iter())
            .filter_map(|p| self.spec(p).ok())
            .map(|s| s.peer.as_str())
            .collect();
        let seeds = seeds.join(",");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)?;
        let t = self.timings;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("node")
            .args(["--name", &spec.name, "--client", &spec.client])
            .args(["--peer", &spec.peer, "--admin", &spec.admin])
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .arg("--fault-injection")
            .arg(format!("--set=heartbeat_interval_ms={}", t.heartbeat_ms))
            .arg(format!("--set=failure_timeout_ms={}", t.failure_ms))
            .arg(format!("--set=request_timeout_ms={}", t.request_ms))
            // Scenarios run many nodes on one machine: one thread each.
            .arg("--set=worker_threads=1")
            // One token per node: the 2014 scripts' placement.
            .arg("--set=vnodes=1")
            // And their design's re-replication as soon as a node is down
            // (no delay: see `rebuild_delay_ms`).
            .arg("--set=rebuild_delay_ms=0")
            .args(&self.node_flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if !seeds.is_empty() {
            cmd.args(["--seeds", &seeds]);
        }
        let proc = Proc::spawn(&mut cmd, &spec.name, &spec.log, self.deaths.clone())?;
        let (pid, exited) = (proc.pid, proc.exited.clone());
        lock(&self.slots)[i].proc = Some(proc);
        self.await_health(spec, pid, exited).await?;
        let splits: Vec<_> = lock(&self.splits).clone().into_iter().collect();
        for (name, nodes) in splits {
            self.fault(&spec.name, &FaultCommand::Split { name, nodes })
                .await?;
        }
        self.await_joined(spec, &peers).await;
        eprintln!(
            "scenario: started {} (pid {pid}): client {} peer {} admin {}",
            spec.name, spec.client, spec.peer, spec.admin
        );
        Ok(())
    }

    /// Waits until the new node and each running peer it names (that no
    /// split separates from it) see each other up, the peers seeing this
    /// generation of it, so that the next request finds the ring complete.
    /// Gives up with a warning after [`START_LIMIT`]: a node that cannot
    /// join is a fact of the run, not a failure of the runner.
    async fn await_joined(&self, spec: &NodeSpec, peers: &[String]) {
        let until = Instant::now() + START_LIMIT;
        loop {
            let waiting = self.not_joined(spec, peers).await;
            if waiting.is_empty() {
                return;
            }
            if Instant::now() > until {
                eprintln!(
                    "scenario: {} and {} still do not see each other up; going on",
                    spec.name,
                    waiting.join(",")
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The peers of `spec` that should see it up but do not yet (or that
    /// it does not see up).
    async fn not_joined(&self, spec: &NodeSpec, peers: &[String]) -> Vec<String> {
        let limit = Duration::from_millis(500);
        let Ok(mine) = status(&spec.admin, limit).await else {
            return vec![spec.name.clone()];
        };
        let splits = lock(&self.splits).clone();
        let mut waiting = Vec::new();
        for peer in peers {
            if apart(&splits, &spec.name, peer) || *peer == spec.name || !self.is_running(peer) {
                continue;
            }
            let sees_peer = mine.nodes.iter().any(|n| n.name == *peer && is_up(n));
            let Ok(spec_of_peer) = self.spec(peer) else {
                continue;
            };
            let seen_by_peer = match status(&spec_of_peer.admin, limit).await {
                Ok(theirs) => (theirs.nodes.iter())
                    .any(|n| n.name == spec.name && n.generation == mine.generation && is_up(n)),
                Err(_) => false,
            };
            if !(sees_peer && seen_by_peer) {
                waiting.push(peer.clone());
            }
        }
        waiting
    }

    /// The running nodes that have not settled, each with what it waits
    /// for: a node has settled when it sees up every running node that no
    /// split separates from it, and has finished the anti-entropy round of
    /// its latest view change (`view_epoch_reconciled` in `/status`).
    pub async fn unsettled(&self) -> Vec<String> {
        let limit = Duration::from_millis(500);
        let splits = lock(&self.splits).clone();
        let running = self.running();
        let mut waiting = Vec::new();
        for name in &running {
            let Ok(spec) = self.spec(name) else { continue };
            let st = match status(&spec.admin, limit).await {
                Ok(st) => st,
                Err(e) => {
                    waiting.push(format!("{name} ({e})"));
                    continue;
                }
            };
            let unseen: Vec<&str> = (running.iter())
                .filter(|peer| !apart(&splits, name, peer))
                .filter(|peer| !st.nodes.iter().any(|n| n.name == **peer && is_up(n)))
                .map(String::as_str)
                .collect();
            if !unseen.is_empty() {
                waiting.push(format!("{name} (does not see {} up)", unseen.join(",")));
            } else if st.view_epoch_reconciled < st.view_epoch {
                let (done, epoch) = (st.view_epoch_reconciled, st.view_epoch);
                waiting.push(format!("{name} (anti-entropy at view {done} of {epoch})"));
            }
        }
        waiting
    }

    /// Polls `/health` until it answers 200, the process exits or
    /// [`START_LIMIT`] passes.
    async fn await_health(
        &self,
        spec: &NodeSpec,
        pid: u32,
        exited: watch::Receiver<Option<String>>,
    ) -> Result<(), RunError> {
        let until = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = exited.borrow().clone() {
                let tail = log_tail(&spec.log);
                let why = format!("{} (pid {pid}) failed to start: {status}{tail}", spec.name);
                return Err(RunError::Failed(why));
            }
            let probe = http::get(&spec.admin, "/health", Duration::from_millis(500)).await;
            if matches!(probe, Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > until {
                let why = format!(
                    "{} did not answer on {} within {} s",
                    spec.name,
                    spec.admin,
                    START_LIMIT.as_secs()
                );
                return Err(RunError::Failed(why));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Signals node `i` (marking its exit expected) and waits for it to
    /// exit, escalating to SIGKILL after `STOP_GRACE` (5 s).
    async fn halt(&self, i: usize, signal: libc::c_int) {
        let taken = lock(&self.slots)[i].proc.take();
        let Some(proc) = taken else { return };
        proc.stop(signal).await;
    }

    /// Stops every node still running: SIGTERM to all, then SIGKILL to any
    /// that has not exited after `STOP_GRACE` (5 s).
    pub async fn stop_all(&self) {
        let procs: Vec<Proc> = (lock(&self.slots).iter_mut())
            .filter_map(|slot| slot.proc.take())
            .collect();
        let stops = procs.into_iter().map(|p| p.stop(libc::SIGTERM));
        futures::future::join_all(stops).await;
    }

    /// Records a split (or its removal) and tells every running node.
    pub async fn split(&self, cmd: FaultCommand) -> Result<(), RunError> {
        match &cmd {
            FaultCommand::Split { name, nodes } => {
                lock(&self.splits).insert(name.clone(), nodes.clone());
            }
            FaultCommand::Join { name } => {
                lock(&self.splits).remove(name);
            }
            _ => {}
        }
        let running = self.running();
        let sends = running.iter().map(|n| self.fault(n, &cmd));
        futures::future::try_join_all(sends).await.map(|_| ())
    }

    /// Sends one fault command to one node's admin port.
    pub async fn fault(&self, name: &str, cmd: &FaultCommand) -> Result<(), RunError> {
        let spec = self.spec(name)?;
        let body = serde_json::to_string(cmd).map_err(|e| RunError::Failed(e.to_string()))?;
        let (code, text) =
            http::request(&spec.admin, "POST", "/fault", Some(&body), FAULT_LIMIT).await?;
        if code != 200 {
            let why = format!("{name} refused fault {body}: {code} {}", text.trim());
            return Err(RunError::Failed(why));
        }
        Ok(())
    }
}

/// A node's `/status`.
async fn status(admin: &str, limit: Duration) -> Result<Status, RunError> {
    let (code, body) = http::get(admin, "/status", limit).await?;
    if code != 200 {
        return Err(RunError::Failed(format!("{admin}/status answered {code}")));
    }
    serde_json::from_str(&body).map_err(|e| RunError::Failed(format!("{admin}/status: {e}")))
}

/// Whether a standing split separates nodes `a` and `b`.
fn apart(splits: &BTreeMap<String, Vec<String>>, a: &str, b: &str) -> bool {
    let on = |island: &Vec<String>, n: &str| island.iter().any(|m| m == n);
    (splits.values()).any(|island| on(island, a) != on(island, b))
}

fn is_up(n: &NodeStatus) -> bool {
    n.state == MemberState::Up
}
