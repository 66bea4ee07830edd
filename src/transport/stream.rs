//! A peer connection's socket: plain TCP, or TLS over it (`tls_peers`,
//! see `tls/peer.rs`). The handshake and the link read and write it the
//! same way; a plain connection splits into TCP's own halves, so it costs
//! what it cost before TLS existed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

use super::handshake::HANDSHAKE_TIMEOUT;
use crate::error::{Error, Result};
use crate::tls::peer::PeerTls;

/// A peer connection.
#[derive(Debug)]
pub enum PeerStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The read half of a [`PeerStream`].
pub enum PeerRead {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<Box<TlsStream<TcpStream>>>),
}

/// The write half of a [`PeerStream`] split by [`PeerStream::into_split`],
/// kept by a reader for as long as it reads (dropping a TCP write half
/// sends FIN). Held, never written to.
#[allow(dead_code)]
pub enum PeerWrite {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<Box<TlsStream<TcpStream>>>),
}

impl PeerStream {
    /// The accepting side of a new connection: `tcp` itself, or its TLS
    /// session when `tls` is on. `Err` with the reason to log as a refused
    /// handshake.
    pub async fn accepted(
        tcp: TcpStream,
        tls: Option<&PeerTls>,
    ) -> std::result::Result<Self, String> {
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let Some(tls) = tls else {
            return Ok(PeerStream::Plain(tcp));
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
            Ok(Ok(s)) => Ok(PeerStream::Tls(Box::new(s))),
            Ok(Err(e)) => Err(format!("TLS: {e}")),
            Err(_) => Err(format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}")),
        }
    }

    /// The connecting side of a new connection to `addr`: `tcp` itself, or
    /// its TLS session when `tls` is on.
    pub async fn connected(tcp: TcpStream, tls: Option<&PeerTls>, addr: &str) -> Result<Self> {
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(PeerStream::Plain(tcp));
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(tcp))
            .await
            .map_err(|_| Error::Timeout(format!("TLS handshake with {addr}")))?
            .map(|s| PeerStream::Tls(Box::new(s)))
            .map_err(|e| Error::Protocol(format!("TLS with {addr}: {e}")))
    }

    /// The two halves.
    pub fn into_split(self) -> (PeerRead, PeerWrite) {
        match self {
            PeerStream::Plain(s) => {
                let (read, write) = s.into_split();
                (PeerRead::Plain(read), PeerWrite::Plain(write))
            }
            PeerStream::Tls(s) => {
                let (read, write) = tokio::io::split(s);
                (PeerRead::Tls(read), PeerWrite::Tls(write))
            }
        }
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PeerStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PeerStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for PeerRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerRead::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerRead::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}
