//! One node process: spawned, watched, stopped.
//!
//! A task owns each child and waits for its exit. Before the runner stops
//! or kills a node it marks the exit as expected; an exit that was not
//! expected is reported on the `deaths` channel, with the last lines of the
//! node's log, and the runner fails the run with that message. Stopping is
//! a signal, then SIGKILL after [`STOP_GRACE`]. Children are spawned with
//! kill-on-drop, so no node outlives the runner even if it panics.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use super::RunError;

/// How long a stopped node gets to exit before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Log lines quoted when a node dies or fails to start.
const TAIL_LINES: usize = 8;

/// A node process, running or exited.
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// Set before the runner signals it: its exit is then no news.
    expected: Arc<AtomicBool>,
    /// `Some(exit status)` once it has exited.
    pub exited: watch::Receiver<Option<String>>,
}

impl Proc {
    /// Spawns `cmd` (node `name`, logging to `log`) and watches it; an exit
    /// nobody asked for is reported on `deaths`.
    pub fn spawn(
        cmd: &mut Command,
        name: &str,
        log: &Path,
        deaths: mpsc::UnboundedSender<String>,
    ) -> Result<Proc, RunError> {
        let mut child = cmd.kill_on_drop(true).spawn()?;
        let pid = child.id().unwrap_or(0);
        let expected = Arc::new(AtomicBool::new(false));
        let (tx, exited) = watch::channel(None);
        let (watched, name, log) = (expected.clone(), name.to_string(), log.to_path_buf());
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("could not be waited for: {e}"),
            };
            if !watched.load(Ordering::SeqCst) {
                let report = format!(
                    "node {name} (pid {pid}) died unasked ({status}); log: {}{}",
                    log.display(),
                    log_tail(&log)
                );
                // The runner may be gone already; then nobody needs to know.
                deaths.send(report).ok();
            }
            tx.send_replace(Some(status));
        });
        Ok(Proc {
            pid,
            expected,
            exited,
        })
    }

    /// Sends `signal` (unless the process has exited), waits up to
    /// [`STOP_GRACE`], then SIGKILLs it and waits for the exit.
    pub async fn stop(self, signal: libc::c_int) {
        self.expected.store(true, Ordering::SeqCst);
        let mut exited = self.exited;
        signal_if_alive(self.pid, &exited, signal);
        let wait = exited.wait_for(Option::is_some);
        let timed_out = tokio::time::timeout(STOP_GRACE, wait).await.is_err();
        if timed_out {
            eprintln!(
                "scenario: pid {} still running {} s after the signal; killing it",
                self.pid,
                STOP_GRACE.as_secs()
            );
            signal_if_alive(self.pid, &exited, libc::SIGKILL);
            if exited.wait_for(Option::is_some).await.is_err() {
                eprintln!("scenario: lost track of pid {} after SIGKILL", self.pid);
            }
        }
    }
}

/// kill(2) unless the process's waiter has already seen it exit.
fn signal_if_alive(pid: u32, exited: &watch::Receiver<Option<String>>, signal: libc::c_int) {
    if exited.borrow().is_none() {
        // SAFETY: kill(2) on a child we spawned and have not seen exit (its
        // waiter has not reaped it, so the pid is still ours); no memory is
        // touched.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }
}

/// The last lines of a log file, each on its own indented line, for error
/// messages; empty if there are none.
pub fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    let tail: String = lines[start..]
        .iter()
        .map(|l| format!("\n    {l}"))
        .collect();
    if tail.is_empty() {
        tail
    } else {
        format!("; its last lines:{tail}")
    }
}
