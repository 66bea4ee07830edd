//! A raw RESP client that keeps every reply's exact bytes: the
//! differential test's, and the random pipelines' (`tests/pipeline_order.rs`).
#![allow(dead_code)] // each test binary uses a part of it

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::frame::{self, Frame};

/// How long one reply may take before the connection is given up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// What came back for one command.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// One complete reply: its bytes exactly, and its tree.
    Reply(Vec<u8>, Frame),
    /// The server closed the connection (EOF or reset) instead.
    Closed,
    /// No complete reply within [`REPLY_TIMEOUT`].
    Timeout,
    /// Bytes that are not RESP.
    Garbage(Vec<u8>, String),
    /// Not sent: the connection had already ended.
    NotSent,
}

impl Outcome {
    /// The raw bytes as `b"..."` with escapes, or what happened instead.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Reply(raw, _) => format!("{:?}", bytes::Bytes::copy_from_slice(raw)),
            Outcome::Closed => "<connection closed>".into(),
            Outcome::Timeout => format!("<no reply within {REPLY_TIMEOUT:?}>"),
            Outcome::Garbage(raw, e) => {
                format!("<not RESP: {e}: {:?}>", bytes::Bytes::copy_from_slice(raw))
            }
            Outcome::NotSent => "<not sent: connection already ended>".into(),
        }
    }
}

/// One raw connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    ended: bool,
}

impl Conn {
    pub fn connect(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            ended: false,
        })
    }

    /// Sends one command (an array of bulk strings) and reads exactly one
    /// reply. After a close, a timeout or garbage the connection is over:
    /// later calls return [`Outcome::NotSent`].
    pub fn call(&mut self, args: &[Vec<u8>]) -> Outcome {
        if self.ended {
            return Outcome::NotSent;
        }
        let outcome = self.exchange(args);
        self.ended = !matches!(outcome, Outcome::Reply(..));
        outcome
    }

    /// Sends `cmds` in one write and reads one reply for each. After a
    /// close, a timeout or garbage the connection is over: the outcomes
    /// from there on are that one and then [`Outcome::NotSent`].
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<Outcome> {
        if self.ended {
            return vec![Outcome::NotSent; cmds.len()];
        }
        let bytes: Vec<u8> = cmds.iter().flat_map(|c| encode(c)).collect();
        if let Err(e) = self.stream.write_all(&bytes) {
            self.ended = true;
            let mut out = vec![io_outcome(e)];
            out.resize(cmds.len(), Outcome::NotSent);
            return out;
        }
        let mut out = Vec::with_capacity(cmds.len());
        while out.len() < cmds.len() {
            if self.ended {
                out.push(Outcome::NotSent);
                continue;
            }
            let outcome = self.read_reply();
            self.ended = !matches!(outcome, Outcome::Reply(..));
            out.push(outcome);
        }
        out
    }

    fn exchange(&mut self, args: &[Vec<u8>]) -> Outcome {
        if let Err(e) = self.stream.write_all(&encode(args)) {
            return io_outcome(e);
        }
        self.read_reply()
    }

    fn read_reply(&mut self) -> Outcome {
        loop {
            match frame::parse(&self.buf) {
                Ok(Some((f, used))) => {
                    let raw = self.buf.drain(..used).collect();
                    return Outcome::Reply(raw, f);
                }
                Ok(None) => {}
                Err(e) => return Outcome::Garbage(std::mem::take(&mut self.buf), e),
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Outcome::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return io_outcome(e),
            }
        }
    }

    /// Whether bytes arrived that no reply has taken yet.
    pub fn has_leftover(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// A failed read or write: a peer that closed (whether the kernel says EOF,
/// reset or broken pipe depends on timing) or a timeout.
fn io_outcome(e: std::io::Error) -> Outcome {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::Timeout,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Outcome::Closed
        }
        _ => Outcome::Garbage(Vec::new(), format!("i/o error: {e}")),
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}
