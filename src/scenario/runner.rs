//! Executing a checked script: steps in order, `after` blocks as tasks.
//!
//! The script's top level runs as one sequence. An `after MS { ... }` step
//! spawns its body as a task that sleeps MS and then runs as a sequence of
//! its own (and may spawn further blocks), while the sequence that spawned
//! it goes straight on. The run is over when the top level has finished and
//! the task tracker holding every block is empty.
//!
//! The first failure anywhere (a node that does not start, a node that dies
//! unasked, a fault a node refuses) is stored, cancels every sequence at its
//! next step or pause, and is the run's result. Answers to requests are
//! never failures: an error reply is printed like any other answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client;
use super::cluster::Cluster;
use super::output::{Answer, Op, Outcome, Printer};
use super::parse::{Command, Direction, Step};
use super::RunError;
use crate::transport::fault::{Direction as Way, FaultCommand};

/// How long `settle` waits for the cluster before it fails the run.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// The state every sequence of one run shares.
pub struct Runner {
    /// The nodes.
    pub cluster: Cluster,
    /// Where answers go.
    pub printer: Printer,
    /// How long the runner waits for any one answer.
    pub deadline: Duration,
    tracker: TaskTracker,
    cancel: CancellationToken,
    failure: Mutex<Option<RunError>>,
}

impl Runner {
    /// A runner over `cluster`.
    pub fn new(cluster: Cluster, printer: Printer, deadline: Duration) -> Self {
        Runner {
            cluster,
            printer,
            deadline,
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            failure: Mutex::new(None),
        }
    }

    /// Runs `steps` and every block they spawn; returns at the first
    /// failure, a node's unasked death (reported on `deaths`), or a SIGINT
    /// or SIGTERM to the runner. Leaves the nodes running.
    pub async fn drive(
        self: Arc<Self>,
        steps: Vec<Step>,
        deaths: &mut mpsc::UnboundedReceiver<String>,
    ) -> Result<(), RunError> {
        let mut term = signal(SignalKind::terminate())?;
        let main = self.clone().sequence(Arc::new(steps));
        tokio::pin!(main);
        let mut main_done = false;
        let outcome = loop {
            tokio::select! {
                done = &mut main, if !main_done => {
                    if let Err(e) = done {
                        break Err(e);
                    }
                    main_done = true;
                    self.tracker.close();
                }
                () = self.tracker.wait(), if main_done => break Ok(()),
                Some(death) = deaths.recv() => break Err(RunError::Failed(death)),
                () = self.cancel.cancelled() => {
                    let failure = self.lock_failure().take();
                    break Err(failure.unwrap_or(RunError::Failed("cancelled".into())));
                }
                _ = tokio::signal::ctrl_c() => break Err(RunError::Failed("interrupted (SIGINT)".into())),
                _ = term.recv() => break Err(RunError::Failed("interrupted (SIGTERM)".into())),
            }
        };
        self.cancel.cancel();
        self.tracker.close();
        let settled = tokio::time::timeout(self.deadline * 2, self.tracker.wait()).await;
        if settled.is_err() {
            eprintln!("scenario: some blocks were still busy when the run ended");
        }
        outcome
    }

    fn lock_failure(&self) -> std::sync::MutexGuard<'_, Option<RunError>> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the first failure and stops every sequence.
    fn fail(&self, e: RunError) {
        self.lock_failure().get_or_insert(e);
        self.cancel.cancel();
    }

    /// Runs `steps` one after another (boxed: blocks recurse through it).
    fn sequence(
        self: Arc<Self>,
        steps: Arc<Vec<Step>>,
    ) -> BoxFuture<'static, Result<(), RunError>> {
        async move {
            for step in steps.iter() {
                if self.cancel.is_cancelled() {
                    return Ok(());
                }
                self.step(step).await.map_err(|e| e.at_line(step.line))?;
            }
            Ok(())
        }
        .boxed()
    }

    async fn step(self: &Arc<Self>, step: &Step) -> Result<(), RunError> {
        let cluster = &self.cluster;
        match &step.cmd {
            Command::Start { name, peers } => cluster.start(name, peers).await,
            Command::Stop(name) => cluster.signal(name, libc::SIGTERM).await,
            Command::Kill(name) => cluster.signal(name, libc::SIGKILL).await,
            Command::Restart(name) => cluster.restart(name).await,
            Command::Set { node, key, value } => {
                let args = ["SET", key, value];
                self.request(step.line, Op::Set, node, &args).await;
                Ok(())
            }
            Command::Get { node, key } => {
                self.request(step.line, Op::Get, node, &["GET", key]).await;
                Ok(())
            }
            Command::Del { node, key } => {
                self.request(step.line, Op::Del, node, &["DEL", key]).await;
                Ok(())
            }
            Command::Split { name, nodes } => {
                eprintln!("scenario: split {name}: {} cut off", nodes.join(","));
                let (name, nodes) = (name.clone(), nodes.clone());
                cluster.split(FaultCommand::Split { name, nodes }).await
            }
            Command::Join(name) => {
                eprintln!("scenario: join {name}");
                let name = name.clone();
                cluster.split(FaultCommand::Join { name }).await
            }
            Command::Drop { count, dir, node } => {
                self.drop_messages(*count, *dir, node.as_deref()).await
            }
            Command::Delay { count, ms } => {
                let (count, ms) = (*count, *ms);
                self.spread(count, |count| FaultCommand::Delay { count, ms })
                    .await
            }
            Command::After { ms, body } => {
                let (me, body, pause) = (self.clone(), Arc::new(body.clone()), *ms);
                self.tracker.spawn(async move {
                    tokio::select! {
                        () = me.cancel.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_millis(pause)) => {
                            if let Err(e) = me.clone().sequence(body).await {
                                me.fail(e);
                            }
                        }
                    }
                });
                Ok(())
            }
            Command::Wait(ms) => {
                tokio::select! {
                    () = self.cancel.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(*ms)) => {}
                }
                Ok(())
            }
            Command::Settle => self.settle(cluster).await,
        }
    }

    /// Sends one request and prints its answer; never fails the run.
    async fn request(&self, line: usize, op: Op, node: &Option<String>, args: &[&str]) {
        let target = match node {
            Some(name) => Some(name.clone()),
            None => self.cluster.pick_running(),
        };
        let started = Instant::now();
        let outcome = match &target {
            None => Outcome::Error("no node is running".into()),
            Some(name) if !self.cluster.is_running(name) => {
                Outcome::Error(format!("{name} is not running"))
            }
            Some(name) => match self.cluster.spec(name) {
                Ok(spec) => {
                    let reply = client::request(&spec.client, args, self.deadline).await;
                    Outcome::from_reply(op, reply)
                }
                Err(e) => Outcome::Error(e.to_string()),
            },
        };
        let answer = Answer {
            line,
            op,
            node: target,
            key: args[1].to_string(),
            value: args.get(2).map(|v| v.to_string()),
            outcome,
            latency: started.elapsed(),
        };
        self.printer.print(&answer);
    }

    /// `settle`: polls until the cluster has settled (see
    /// [`Cluster::unsettled`]), failing the run after [`SETTLE_LIMIT`].
    async fn settle(&self, cluster: &Cluster) -> Result<(), RunError> {
        let started = Instant::now();
        loop {
            let waiting = cluster.unsettled().await;
            if waiting.is_empty() {
                eprintln!("scenario: settled after {:?}", started.elapsed());
                return Ok(());
            }
            if started.elapsed() > SETTLE_LIMIT {
                let waiting = waiting.join(", ");
                let why = format!("`settle`: still unsettled after {SETTLE_LIMIT:?}: {waiting}");
                return Err(RunError::Failed(why));
            }
            tokio::select! {
                () = self.cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    /// `drop COUNT [to|from] NODE`: the node drops its next COUNT incoming
    /// or outgoing messages; `drop COUNT` spreads COUNT over the running
    /// nodes' outgoing messages.
    async fn drop_messages(
        &self,
        count: u64,
        dir: Direction,
        node: Option<&str>,
    ) -> Result<(), RunError> {
        let Some(node) = node else {
            let make = |count| FaultCommand::Drop {
                count,
                direction: Way::Outgoing,
                peer: None,
            };
            return self.spread(count, make).await;
        };
        if !self.cluster.is_running(node) {
            eprintln!("scenario: drop: {node} is not running; nothing to drop");
            return Ok(());
        }
        let direction = match dir {
            Direction::To => Way::Incoming,
            Direction::From => Way::Outgoing,
            Direction::Any => Way::Any,
        };
        let cmd = FaultCommand::Drop {
            count,
            direction,
            peer: None,
        };
        self.cluster.fault(node, &cmd).await
    }

    /// Shares `count` out over the running nodes (in port order, the first
    /// ones taking one more when it does not divide evenly) and sends each
    /// node `make(its share)`.
    async fn spread(&self, count: u64, make: impl Fn(u64) -> FaultCommand) -> Result<(), RunError> {
        let running = self.cluster.running();
        if running.is_empty() {
            eprintln!("scenario: no node is running; the fault goes nowhere");
        }
        for (node, share) in running.iter().zip(shares(count, running.len())) {
            if share > 0 {
                self.cluster.fault(node, &make(share)).await?;
            }
        }
        Ok(())
    }
}

/// `count` split into `k` shares that differ by at most one, larger first.
pub fn shares(count: u64, k: usize) -> Vec<u64> {
    let k64 = k.max(1) as u64;
    (0..k as u64)
        .map(|i| count / k64 + u64::from(i < count % k64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::shares;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(shares(5, 0), Vec::<u64>::new());
        assert_eq!(shares(7, 1), vec![7]);
    }
}
