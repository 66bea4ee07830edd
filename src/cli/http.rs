//! A minimal HTTP/1.0 client for the admin port (status, up, scenario).
//!
//! The admin API is tiny and local, so one request per connection with
//! `Connection: close` semantics is all the CLI needs; this avoids pulling a
//! full HTTP client into the binary. Over HTTPS when the CLI was told the
//! nodes serve it (`tls::client`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::tls::client::{admin_scheme, connect_admin};

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
        let mut stream = connect_admin(addr).await?;
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
        .map_err(|_| Error::Timeout(format!("{method} {}://{addr}{path}", admin_scheme())))?
}

/// GET `path` from `addr`.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String)> {
    request(addr, "GET", path, None, timeout).await
}

/// POSTs to `path` and copies a 200 answer's body into `sink`, as it
/// arrives; returns the bytes copied. Any other status is an error with
/// the body's text. `idle` bounds each wait for more bytes, not the whole
/// transfer, which takes as long as the body is large.
pub async fn download(
    addr: &str,
    path: &str,
    sink: &mut (impl tokio::io::AsyncWrite + Unpin),
    idle: Duration,
) -> Result<u64> {
    let scheme = admin_scheme();
    let timed = |what: &str| Error::Timeout(format!("POST {scheme}://{addr}{path}: {what}"));
    let mut stream = tokio::time::timeout(idle, connect_admin(addr))
        .await
        .map_err(|_| timed("connect"))??;
    let head = format!("POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut buf = vec![0u8; 1 << 16];
    let mut raw = Vec::new();
    let end = loop {
        let n = tokio::time::timeout(idle, stream.read(&mut buf))
            .await
            .map_err(|_| timed("waiting for the answer"))??;
        if n == 0 {
            return Err(Error::Protocol(format!(
                "POST {scheme}://{addr}{path}: connection closed before an answer"
            )));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let (code, _) = parse(&raw[..end])?;
    if code != 200 {
        let mut rest = raw[end..].to_vec();
        (&mut stream).take(MAX_BODY).read_to_end(&mut rest).await?;
        return Err(Error::Protocol(format!(
            "POST {scheme}://{addr}{path}: {code} {}",
            String::from_utf8_lossy(&rest).trim()
        )));
    }
    sink.write_all(&raw[end..]).await?;
    let mut total = (raw.len() - end) as u64;
    loop {
        let n = tokio::time::timeout(idle, stream.read(&mut buf))
            .await
            .map_err(|_| timed("the body stalled"))??;
        if n == 0 {
            break;
        }
        sink.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    sink.flush().await?;
    Ok(total)
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
