//! The writer's work on the blocking pool that no append waits for.
//!
//! Three kinds, at most one of each at a time: the `Interval` fsync of the
//! active segment, the final fsync of the segment just retired by a
//! rotation, and the creation of the next segment (its header, its fsync
//! and the directory's). Each can take tens of milliseconds on a loaded
//! disk: an ext4 fsync commits the journal, which in `data=ordered` mode
//! also flushes whatever else was written. Done inline, every append on the
//! node waited that long at each rotation and each interval, which was the
//! cluster's p99. Here they run beside the appends, and the writer task
//! learns of their end through [`Background::next`].

use std::fs::File;
use std::future::{poll_fn, Future};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use super::files::{create_segment, segment_path};
use super::stats::Counters;
use crate::error::{Error, Result};

/// A test's hook, run on the blocking thread before an fsync.
#[cfg(test)]
pub(super) type Hook = Option<Arc<dyn Fn() + Send + Sync>>;

/// The end of one piece of background work.
pub(super) enum Event {
    /// The interval fsync that began at this instant ended.
    Synced(Instant, io::Result<()>),
    /// The retired segment's final fsync ended.
    Retired(io::Result<()>),
    /// The next segment was created, or could not be.
    Created(Result<File>),
}

/// The background work under way.
#[derive(Default)]
pub(super) struct Background {
    sync: Option<(Instant, JoinHandle<io::Result<()>>)>,
    retire: Option<JoinHandle<io::Result<()>>>,
    create: Option<JoinHandle<Result<File>>>,
    #[cfg(test)]
    before_sync: Hook,
}

impl Background {
    /// No work under way; a test's hook runs before each fsync.
    #[cfg(test)]
    pub fn with_hook(before_sync: Hook) -> Self {
        Background {
            before_sync,
            ..Background::default()
        }
    }

    pub fn syncing(&self) -> bool {
        self.sync.is_some()
    }

    pub fn retiring(&self) -> bool {
        self.retire.is_some()
    }

    pub fn creating(&self) -> bool {
        self.create.is_some()
    }

    pub fn idle(&self) -> bool {
        !self.syncing() && !self.retiring() && !self.creating()
    }

    /// fsync `file` (the active segment) as of now.
    pub fn start_sync(&mut self, file: Arc<File>, counters: &Arc<Counters>) {
        let task = self.fsync(file, counters);
        self.sync = Some((Instant::now(), task));
    }

    /// fsync `file`, the segment a rotation just retired.
    pub fn start_retire(&mut self, file: Arc<File>, counters: &Arc<Counters>) {
        self.retire = Some(self.fsync(file, counters));
    }

    /// Create segment `seq` in `dir`. A file already there can only be
    /// what a failed attempt left (the writer never wrote to it: it writes
    /// only to segments whose creation succeeded), so it is replaced.
    pub fn start_create(&mut self, dir: PathBuf, seq: u64) {
        self.create = Some(tokio::task::spawn_blocking(move || {
            match create_segment(&dir, seq) {
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists => {
                    std::fs::remove_file(segment_path(&dir, seq))?;
                    create_segment(&dir, seq)
                }
                other => other,
            }
        }));
    }

    fn fsync(&self, file: Arc<File>, counters: &Arc<Counters>) -> JoinHandle<io::Result<()>> {
        let counters = counters.clone();
        #[cfg(test)]
        let hook = self.before_sync.clone();
        tokio::task::spawn_blocking(move || {
            #[cfg(test)]
            if let Some(hook) = hook {
                hook();
            }
            counters.fsync(&file)
        })
    }

    /// The next piece of work to end; never resolves while none runs.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub async fn next(&mut self) -> Event {
        poll_fn(|cx| {
            if let Some((started, task)) = &mut self.sync {
                if let Poll::Ready(r) = Pin::new(task).poll(cx) {
                    let started = *started;
                    self.sync = None;
                    return Poll::Ready(Event::Synced(started, joined(r)));
                }
            }
            if let Some(task) = &mut self.retire {
                if let Poll::Ready(r) = Pin::new(task).poll(cx) {
                    self.retire = None;
                    return Poll::Ready(Event::Retired(joined(r)));
                }
            }
            if let Some(task) = &mut self.create {
                if let Poll::Ready(r) = Pin::new(task).poll(cx) {
                    self.create = None;
                    let r = r.unwrap_or_else(|e| Err(Error::Io(join_error(e))));
                    return Poll::Ready(Event::Created(r));
                }
            }
            Poll::Pending
        })
        .await
    }
}

fn joined(r: std::result::Result<io::Result<()>, JoinError>) -> io::Result<()> {
    r.unwrap_or_else(|e| Err(join_error(e)))
}

fn join_error(e: JoinError) -> io::Error {
    io::Error::other(format!("commit log background task failed: {e}"))
}
