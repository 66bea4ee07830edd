//! A minimal HTTP/1.0 client for the admin port (status, up, scenario).
//!
//! The admin API is tiny and local, so one request per connection with
//! `Connection: close` semantics is all the CLI needs; this avoids pulling a
//! full HTTP client into the binary.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Sends one request; returns the status code and body.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String)> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(MAX_BODY).read_to_end(&mut raw).await?;
        parse(&raw)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::Timeout(format!("{method} http://{addr}{path}")))?
}

/// GET `path` from `addr`.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String)> {
    request(addr, "GET", path, None, timeout).await
}

fn parse(raw: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| Error::Protocol("HTTP response without a header end".into()))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            Error::Protocol(format!(
                "bad HTTP status line: {}",
                head.lines().next().unwrap_or("")
            ))
        })?;
    Ok((code, body.to_string()))
}
