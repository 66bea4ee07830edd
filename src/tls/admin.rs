//! HTTPS on the admin port (`tls_admin = true`): an axum [`Listener`] that
//! hands the server finished TLS sessions, and says of each whether its
//! client presented a certificate from the cluster's CA.
//!
//! Handshakes run in their own tasks, so a client that connects and says
//! nothing holds up no one else's accept. The certificate is asked for and
//! checked at the handshake but not required there: `/health`, `/status`,
//! `/metrics` and the dashboard answer any TLS client (Kubernetes' probes
//! present none), while the routes that act (leave, forget, backup, fault)
//! need one unless `tls_auth_clients = no` (see `admin.rs`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::ServerTls;

/// Who is on the other end of an admin connection.
#[derive(Clone, Copy, Debug)]
pub struct AdminPeer {
    /// Its address.
    pub addr: SocketAddr,
    /// Whether it presented a certificate the cluster's CA signed.
    pub certified: bool,
}

impl Connected<IncomingStream<'_, TcpListener>> for AdminPeer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        AdminPeer {
            addr: *stream.remote_addr(),
            certified: false,
        }
    }
}

impl Connected<IncomingStream<'_, HttpsListener>> for AdminPeer {
    fn connect_info(stream: IncomingStream<'_, HttpsListener>) -> Self {
        *stream.remote_addr()
    }
}

/// Sessions waiting for the server to take them.
const BACKLOG: usize = 64;

/// The admin port's listener when it speaks HTTPS.
pub struct HttpsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, AdminPeer)>,
}

impl HttpsListener {
    /// Accepts on `tcp` and shakes hands with `tls` until `shutdown`.
    pub fn new(
        tcp: TcpListener,
        tls: Arc<ServerTls>,
        shutdown: CancellationToken,
    ) -> std::io::Result<HttpsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(BACKLOG);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    a = tcp.accept() => a,
                };
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, say: wait a little, as axum's
                        // own listener does, rather than spin.
                        warn!(error = %e, "admin port: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Some(session) = tls.accept(stream).await {
                        let certified = session.get_ref().1.peer_certificates().is_some();
                        let _closed = tx.send((session, AdminPeer { addr, certified })).await;
                    }
                });
            }
        });
        Ok(HttpsListener { local, ready })
    }
}

impl Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = AdminPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(session) => session,
            // The acceptor stopped: shutdown, which ends the server first.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(AdminPeer {
            addr: self.local,
            certified: false,
        })
    }
}
