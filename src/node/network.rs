//! Which network a node's peer traffic goes over, and what a simulation
//! does to a node that a real cluster would do with `kill -9`.

use std::sync::Arc;

use super::Node;
use crate::transport::mem::MemNet;

/// The network a node's peer traffic goes over.
#[derive(Clone, Default)]
pub enum Network {
    /// TCP (or TLS over it) on the `peer` address: every real node.
    #[default]
    Tcp,
    /// An in-memory network shared with the other nodes of a simulated
    /// cluster in this process (`transport::mem`); `peer` is only a
    /// name on it. Clients still connect over TCP.
    Mem(Arc<MemNet>),
}

impl Node {
    /// Stops the node as `kill -9` would, for a simulated cluster: every
    /// task is aborted at once (nothing drains, nothing is handed over),
    /// the node leaves `net`, and the commit log is closed without marking
    /// the stop clean, so a restart on the same data directory recovers
    /// as after a crash. What was written before is on disk, as the page
    /// cache keeps it through a process crash.
    pub async fn crash(mut self, net: &MemNet) {
        net.detach(self.shared.cfg.advertise_addr());
        self.shutdown.cancel();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Err(e) = self.shared.log.shutdown().await {
            tracing::debug!(error = %e, "the crashed node's log did not close cleanly");
        }
    }
}
