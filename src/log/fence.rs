//! When the commit log cannot be written: the fence, its reason, and the
//! disk faults tests inject.
//!
//! A node whose log cannot take a write must not acknowledge writes, but
//! it can still serve reads from memory. The writer raises the fence on
//! the first failed write or fsync and says why; everything that takes
//! writes (the replica path, the coordinator, the heartbeats that tell
//! peers to write elsewhere) reads [`Fence::reason`]. A failed write is
//! recoverable: the writer truncates the partial frame and lowers the
//! fence once a probe write succeeds. A failed fsync is not: the kernel
//! may have dropped the pages it could not write, so data the node
//! acknowledged may be gone from the file while the page cache says
//! otherwise (PostgreSQL's fsync lesson). The fence then stays up until
//! a restart, which replays what the file really holds; anti-entropy
//! refills the rest from the other replicas.
//!
//! Injected faults (`{"op":"disk",...}` on the admin port) fail the next
//! N writes or fsyncs with ENOSPC or EIO, so the tests need neither root
//! nor a small filesystem.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Why the log takes no writes, if it does not.
#[derive(Debug, Default)]
pub struct Fence {
    reason: Mutex<Option<String>>,
    up: AtomicBool,
    sticky: AtomicBool,
}

impl Fence {
    /// The reason writes are refused (`None`: they are not). One atomic
    /// load when the fence is down, as it is on the hot path.
    pub fn reason(&self) -> Option<String> {
        if !self.up.load(Relaxed) {
            return None;
        }
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the fence stays up until a restart (an fsync failed).
    pub fn until_restart(&self) -> bool {
        self.sticky.load(Relaxed)
    }

    pub(super) fn raise(&self, reason: String, until_restart: bool) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        self.sticky.fetch_or(until_restart, Relaxed);
        self.up.store(true, Relaxed);
    }

    pub(super) fn lower(&self) {
        self.up.store(false, Relaxed);
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Which disk operation an injected fault fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskOp {
    /// A write to a log file (appends, the recovery probe, a new segment).
    Write,
    /// An fsync of a log file.
    Fsync,
}

/// The error an injected fault fails with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DiskErrno {
    /// No space left on device.
    Enospc,
    /// Input/output error.
    Eio,
}

impl DiskErrno {
    fn raw(self) -> i32 {
        match self {
            DiskErrno::Enospc => 28,
            DiskErrno::Eio => 5,
        }
    }
}

/// Injected disk faults: how many more writes and fsyncs fail, and how.
#[derive(Debug, Default)]
pub struct DiskFaults {
    writes: AtomicU64,
    write_errno: AtomicI32,
    fsyncs: AtomicU64,
    fsync_errno: AtomicI32,
}

impl DiskFaults {
    /// Fails the next `count` operations `op` with `errno` (0 clears).
    pub fn inject(&self, op: DiskOp, count: u64, errno: DiskErrno) {
        let (n, e) = self.of(op);
        e.store(errno.raw(), Relaxed);
        n.store(count, Relaxed);
    }

    /// Clears every injected fault.
    pub fn clear(&self) {
        self.writes.store(0, Relaxed);
        self.fsyncs.store(0, Relaxed);
    }

    /// The injected failure of one `op`, if one is due (and counts it).
    pub fn check(&self, op: DiskOp) -> io::Result<()> {
        let (n, e) = self.of(op);
        let mut left = n.load(Relaxed);
        while left > 0 {
            match n.compare_exchange_weak(left, left - 1, Relaxed, Relaxed) {
                Ok(_) => return Err(io::Error::from_raw_os_error(e.load(Relaxed))),
                Err(seen) => left = seen,
            }
        }
        Ok(())
    }

    fn of(&self, op: DiskOp) -> (&AtomicU64, &AtomicI32) {
        match op {
            DiskOp::Write => (&self.writes, &self.write_errno),
            DiskOp::Fsync => (&self.fsyncs, &self.fsync_errno),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_faults_fail_exactly_the_next_n_with_the_errno() {
        let f = DiskFaults::default();
        f.inject(DiskOp::Fsync, 2, DiskErrno::Eio);
        assert!(f.check(DiskOp::Write).is_ok());
        for _ in 0..2 {
            let e = f.check(DiskOp::Fsync).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(5));
        }
        assert!(f.check(DiskOp::Fsync).is_ok());
        f.inject(DiskOp::Write, 1, DiskErrno::Enospc);
        let e = f.check(DiskOp::Write).unwrap_err();
        assert!(e.to_string().starts_with("No space left on device"), "{e}");
    }

    #[test]
    fn a_fence_raised_by_an_fsync_stays_flagged_until_restart() {
        let fence = Fence::default();
        assert_eq!(fence.reason(), None);
        fence.raise("disk full".into(), false);
        assert_eq!(fence.reason().as_deref(), Some("disk full"));
        assert!(!fence.until_restart());
        fence.lower();
        assert_eq!(fence.reason(), None);
        fence.raise("fsync failed".into(), true);
        assert!(fence.until_restart());
    }
}
