//! This node's own copy of a write it coordinates: the answer it gives
//! its quorum ([`Local`]), and the log append it waits for only when that
//! answer alone could finish the write ([`OwnLog`]). Kept apart from the
//! quorum driver in `mod.rs`, which only consumes the answer.

use crate::error::{Error, Result};
use crate::quorum::Ack;

/// This node's answer to its own write ([`Shared::apply_locally`]).
pub(super) enum Local<'a> {
    /// Known now.
    Done(Ack),
    /// This answer, once the log append is done (a failed one refuses).
    Logging(crate::log::Appending, Ack),
    /// A typed write's, boxed (see `apply_locally`).
    Checked(std::pin::Pin<Box<dyn std::future::Future<Output = Ack> + Send + 'a>>),
}

/// This node's copy of a write while its log append is under way, with
/// the answer it gives once logged. While the write still waits for more
/// than one acknowledgement, the append is only looked at when something
/// else wakes the write, so its answer does not wake it on its own (a
/// pipelined SET would otherwise be polled once for its log and once for
/// its replica). Once one acknowledgement would do, it is awaited: the
/// write never answers before its own copy is logged.
pub(super) struct OwnLog(pub(super) Option<(crate::log::Appending, Ack)>);

impl OwnLog {
    /// This node's answer if its append has come, or once it comes when
    /// `wait`; `None` while it is under way and not waited for (or when
    /// there is none, or it was given already).
    pub(super) async fn settle(&mut self, wait: bool) -> Option<Ack> {
        let (logging, _) = self.0.as_mut()?;
        let result = match logging.peek() {
            Some(result) => result,
            None if wait => logging.await,
            None => return None,
        };
        let (_, ack) = self.0.take()?;
        Some(logged(result, ack))
    }
}

impl Drop for OwnLog {
    /// A write that ends before its own copy's append answered (it timed
    /// out, or the view left no replicas) leaves the append to finish: one
    /// queued behind a full buffer would otherwise be dropped unwritten.
    fn drop(&mut self) {
        if let Some((logging, _)) = self.0.take() {
            logging.then(Box::new(|result| {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "a write's own log append failed after the write ended");
                }
            }));
        }
    }
}

/// This node's answer `ack` once its log append answered `result`.
pub(super) fn logged(result: Result<()>, ack: Ack) -> Ack {
    match result {
        Ok(()) => ack,
        Err(e) => local_refusal(e),
    }
}

/// A local write refused: the answer it gives the quorum.
pub(super) fn local_refusal(e: Error) -> Ack {
    tracing::debug!(error = %e, "local write refused");
    Ack::Refused(match e {
        Error::Misconf(why) => crate::error::MISCONF_PREFIX.to_string() + &why,
        e => e.to_string(),
    })
}
