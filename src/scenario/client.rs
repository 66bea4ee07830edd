//! One RESP request to one node, with a deadline.
//!
//! The runner opens a fresh connection per request: scenario traffic is a
//! few hundred requests at most, a local connect costs well under a
//! millisecond, and a connection per request means a request to a node that
//! was restarted meanwhile never meets a dead socket. The framing is the
//! server's own ([`ReplyDecoder`]), so the runner speaks exactly what
//! clients speak.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_util::codec::Framed;

use crate::resp::codec::{Reply, ReplyDecoder};

/// Sends `args` to the RESP server at `addr` and returns its reply, or a
/// sentence saying why there is none (refused, closed, past `deadline`).
pub async fn request(addr: &str, args: &[&str], deadline: Duration) -> Result<Reply, String> {
    let work = async {
        let stream = crate::tls::client::connect_client(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let mut framed = Framed::new(stream, ReplyDecoder::default());
        let command: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        framed
            .send(command)
            .await
            .map_err(|e| format!("cannot send to {addr}: {e}"))?;
        match framed.next().await {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(e)) => Err(format!("bad reply from {addr}: {e}")),
            None => Err(format!("{addr} closed the connection without answering")),
        }
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {} ms", deadline.as_millis())),
    }
}
