//! The client listener and the per-connection pipeline.
//!
//! Each connection is one task. It reads commands as they arrive and starts
//! each one at once, up to `max_inflight_per_conn` at a time, so a pipelined
//! batch (redis-benchmark `-P 16`) runs its quorum requests concurrently;
//! replies are written strictly in command order, and every reply that is
//! ready is written with one system call. A protocol error gets an `-ERR`
//! reply and closes the connection, as Redis does; a bad *command* gets an
//! error reply and the connection goes on.
//!
//! Limits, so one client cannot hurt the others:
//!
//! * `max_clients` connections at once: one more gets
//!   `-ERR max number of clients reached` and is closed, as in Redis.
//! * `max_inflight_per_node` commands at once over all connections: a
//!   connection takes a permit for each command it has read before it
//!   starts it, and reads nothing more while it waits for one, so when
//!   the node is saturated clients simply wait (TCP back-pressure), and no
//!   queue grows without bound.
//! * The codec checks `max_array_len` and `max_bulk_bytes` against every
//!   header before allocating; [`Metered`] counts the bytes read since the
//!   last complete command and fails the read past `max_request_bytes`.
//! * A command that has started but is not complete after
//!   `incomplete_request_timeout_ms` (a slowloris client trickling a huge
//!   bulk) is answered with an error naming the limit and closed. The timer
//!   lives in [`Metered`] and is looked at only when a read finds no data in
//!   the middle of a command: a loop that polled a timer (and a fresh
//!   shutdown future) on every turn cost a tenth of an unpipelined request.
//!
//! Deliberately left out: an idle timeout for connections between commands
//! (Redis's `timeout 0` default), and per-client output-buffer limits (a
//! reply is never bigger than the values the client itself could send).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::auth::RateLimit;
use crate::metrics::{Cmd, Outcome};
use crate::node::shared::Shared;
use crate::resp::cmd::table::TRANSACTION_CONTROL;
use crate::resp::cmd::{dispatch_spec, lookup, Run};
use crate::resp::codec::{Limits, Proto, ProtocolError, Reply, RespDecoder};
use crate::resp::conn::{ClientInfo, ConnState, Deregister};
use crate::resp::order::Sequencer;

/// Refused connections (over `max_clients`) and closed slow clients: a few
/// log lines every 10 s.
static REFUSALS: RateLimit = RateLimit::new(5, Duration::from_secs(10));

/// The error a client over `max_clients` gets before it is closed.
pub const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// Serves RESP clients on `listener` until shutdown, over TLS when `tls`
/// is given (see `tls`).
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<crate::tls::ServerTls>>,
    shutdown: CancellationToken,
) {
    // Nothing is served from a metadata record that may miss a FLUSHALL
    // (see `node::meta`); connections wait in the listen queue meanwhile.
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = shared.wait_for_metadata() => {}
    }
    let clients = Arc::new(Semaphore::new(shared.cfg.max_clients));
    let node_inflight = Arc::new(Semaphore::new(shared.cfg.max_inflight_per_node));
    // Connections end with the listener: dropping the set at shutdown
    // aborts them, so their loops need not poll a shutdown future on every
    // turn (that cost about 160 instructions a poll, several per request).
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                let Ok(slot) = clients.clone().try_acquire_owned() else {
                    tokio::spawn(refuse(stream, addr, shared.cfg.max_clients));
                    continue;
                };
                shared
                    .metrics
                    .client_connections
                    .fetch_add(1, Ordering::Relaxed);
                let info = match describe(&shared, &stream, addr) {
                    Ok(info) => info,
                    Err(e) => {
                        debug!(%addr, error = %e, "client connection lost at accept");
                        continue;
                    }
                };
                let id = info.id;
                shared.clients.add(info.clone());
                let deregister = Deregister {
                    clients: shared.clients.clone(),
                    id,
                };
                let shared2 = shared.clone();
                let node_inflight = node_inflight.clone();
                let tls = tls.clone();
                let task = conns.spawn(async move {
                    // Dropped however the task ends, CLIENT KILL's abort included.
                    let _registered = deregister;
                    let ended = match (tls, stream.set_nodelay(true)) {
                        (_, Err(e)) => Err(e),
                        (None, Ok(())) => {
                            let (read, write) = stream.into_split();
                            connection(read, write, shared2, info, node_inflight).await
                        }
                        (Some(tls), Ok(())) => match tls.accept(stream).await {
                            Some(tls) => {
                                let (read, write) = tokio::io::split(tls);
                                connection(read, write, shared2, info, node_inflight).await
                            }
                            None => Ok(()),
                        },
                    };
                    if let Err(e) = ended {
                        debug!(%addr, error = %e, "client connection ended");
                    }
                    drop(slot);
                });
                shared.clients.set_abort(id, task);
            }
            Err(e) => {
                warn!(error = %e, "accepting a client connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Tells a client over `max_clients` so, and closes it.
async fn refuse(mut stream: TcpStream, addr: std::net::SocketAddr, max: usize) {
    if let Some(held_back) = REFUSALS.check(crate::clock::instant()) {
        warn!(%addr, max_clients = max, held_back, "refused a client: max number of clients reached");
    }
    let write = async {
        stream.write_all(MAX_CLIENTS_REPLY).await?;
        stream.shutdown().await
    };
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(1), write).await {
        debug!(%addr, error = %e, "could not tell a refused client why");
    }
}

/// A new connection's entry for the registry (CLIENT LIST and KILL).
fn describe(
    shared: &Shared,
    stream: &TcpStream,
    addr: std::net::SocketAddr,
) -> std::io::Result<Arc<ClientInfo>> {
    use std::os::fd::AsRawFd;
    let laddr = stream.local_addr()?;
    let fd = i64::from(stream.as_raw_fd());
    Ok(Arc::new(ClientInfo::new(
        shared.clients.next_id(),
        addr,
        laddr,
        fd,
    )))
}

/// Serves one client, plaintext or TLS, until it closes.
async fn connection<R, W>(
    read: R,
    mut write: W,
    shared: Arc<Shared>,
    info: Arc<ClientInfo>,
    node_inflight: Arc<Semaphore>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let peer = info.addr;
    let cfg = &shared.cfg;
    let limits = Limits {
        max_array_len: cfg.max_array_len,
        max_bulk_len: cfg.max_bulk_bytes,
        ..Limits::default()
    };
    let incomplete_timeout = Duration::from_millis(cfg.incomplete_request_timeout_ms);
    let metered = Metered::new(read, cfg.max_request_bytes, incomplete_timeout);
    let mut reader = FramedRead::new(metered, RespDecoder::new(limits));
    let mut conn = ConnState::new(info, &shared.acl, shared.default_quorum());
    let max_inflight = cfg.max_inflight_per_conn;
    // Each started command's reply, with what the connection remembers of
    // it until the reply is written (see `Started`); the node-wide permit
    // is given back when the reply is written.
    let mut inflight: Sequencer<Started> = Sequencer::with_capacity(max_inflight + 1);
    let mut held = Held {
        permits: &node_inflight,
        count: 0,
    };
    // A command read but not yet started, waiting for a node-wide permit;
    // while one waits the connection reads nothing more (back-pressure).
    let mut waiting: Option<Vec<Bytes>> = None;
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut reading = true;
    loop {
        if !reading && inflight.is_empty() {
            break;
        }
        let may_read = reading && waiting.is_none() && inflight.len() < max_inflight;
        tokio::select! {
            p = node_inflight.acquire(), if waiting.is_some() => {
                let Some(args) = waiting.take() else { continue };
                let permit = held.take(p.ok());
                start(&shared, &mut conn, args, permit, crate::clock::instant(), &mut inflight);
                reading = !conn.closing;
            }
            frame = reader.next(), if may_read => {
                let mut frame = frame;
                // The commands of one read arrived together: one instant
                // is their start (one clock read, not one per command).
                let now = crate::clock::instant();
                let mut answered = false;
                loop {
                    match frame {
                        Some(Ok(args)) => {
                            reader.get_mut().command_done();
                            // A free permit (the usual case) starts the command at once.
                            match node_inflight.try_acquire() {
                                Ok(p) => {
                                    let permit = held.take(Some(p));
                                    answered |= start(&shared, &mut conn, args, permit, now, &mut inflight);
                                    reading = !conn.closing;
                                }
                                Err(_) => waiting = Some(args),
                            }
                        }
                        Some(Err(e)) => {
                            if is_stall(&e) {
                                if let Some(held_back) = REFUSALS.check(crate::clock::instant()) {
                                    let ms = cfg.incomplete_request_timeout_ms;
                                    warn!(%peer, conn = conn.id(), timeout_ms = ms, held_back, "closed a client whose command stayed incomplete");
                                }
                            }
                            let started = Started { cmd: Cmd::OTHER, at: now, proto: conn.proto, permit: false };
                            inflight.push_done(started, protocol_error(&e));
                            reading = false;
                        }
                        None => reading = false,
                    }
                    // The rest of a pipelined batch is usually buffered
                    // already: start it without another turn of the select.
                    if !(reading && waiting.is_none() && inflight.len() < max_inflight) {
                        break;
                    }
                    match reader.next().now_or_never() {
                        Some(next) => frame = next,
                        None => break,
                    }
                }
                // Replies known at once (reads this node answers alone)
                // are written only after every other task that is ready
                // has run and the I/O driver has been polled again, as
                // Redis writes its replies before it sleeps: the replies
                // of one turn of the event loop leave together, and the
                // client is woken once for them, not once per connection
                // (waking a sleeping reader took 15 % of a lone node's CPU
                // under pipelined GETs). Replies that wait for peers or
                // the log are not held back: they are woken together
                // already, and a second poll would cost more than it saves.
                if answered {
                    tokio::task::yield_now().await;
                }
            }
            Some((started, reply)) = std::future::poll_fn(|cx| inflight.poll_next(cx)), if !inflight.is_empty() => {
                // One instant ends every reply of this write.
                let done = crate::clock::instant();
                let mut permits = usize::from(started.permit);
                encode(&shared, &reply, &started, done, &mut out);
                // Everything else already finished goes out in the same write.
                while let Some(Some((started, reply))) =
                    std::future::poll_fn(|cx| inflight.poll_next(cx)).now_or_never()
                {
                    permits += usize::from(started.permit);
                    encode(&shared, &reply, &started, done, &mut out);
                }
                held.give_back(permits);
                write.write_all(&out).await?;
                out.clear();
            }
            // Not reached: the loop ends before every branch is disabled.
            else => break,
        }
    }
    write.shutdown().await
}

/// Whether `e` is [`Metered`]'s incomplete-command timeout (the only
/// `TimedOut` a client read produces).
fn is_stall(e: &ProtocolError) -> bool {
    matches!(e, ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// The reply to a protocol error (the connection then closes), naming the
/// setting behind a size limit so the operator knows what to raise.
fn protocol_error(e: &ProtocolError) -> Reply {
    match e {
        ProtocolError::ArrayTooLong { len, max } => Reply::err(format!(
            "Protocol error: command of {len} arguments exceeds max_array_len {max}"
        )),
        ProtocolError::BulkTooLong { len, max } => Reply::err(format!(
            "Protocol error: bulk string of {len} bytes exceeds max_bulk_bytes {max}"
        )),
        ProtocolError::Io(io) if is_stall(e) => Reply::err(io),
        ProtocolError::Io(io) => Reply::err(format!("Protocol error: {io}")),
        other => Reply::err(other),
    }
}

/// What a connection remembers of a command it started, until its reply
/// is written: the command (for metrics), when it started, the protocol
/// its reply is written in (the one in force right after it was
/// dispatched, so HELLO's own reply is in the protocol it chose), and its
/// whether it holds a node-wide in-flight permit (see [`Held`]).
struct Started {
    cmd: Cmd,
    at: Instant,
    proto: Proto,
    permit: bool,
}

/// The node-wide in-flight permits a connection holds, one for each
/// command started and not yet answered. They are given back together,
/// once per write of replies (one lock of the semaphore per write, not
/// one per command), and all at once when the connection ends.
struct Held<'a> {
    permits: &'a Semaphore,
    count: usize,
}

impl Held<'_> {
    /// Keeps `permit` (if one was had) until its command's reply is
    /// written; returns whether there was one.
    fn take(&mut self, permit: Option<SemaphorePermit<'_>>) -> bool {
        let Some(permit) = permit else { return false };
        permit.forget();
        self.count += 1;
        true
    }

    /// Gives back `n` permits of replies just written.
    fn give_back(&mut self, n: usize) {
        if n > 0 {
            self.permits.add_permits(n);
            self.count -= n;
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.permits.add_permits(self.count);
    }
}

/// Starts one command: its reply joins the connection's ordered queue.
/// Returns whether the reply was known at once.
fn start(
    shared: &Arc<Shared>,
    conn: &mut ConnState,
    args: Vec<Bytes>,
    permit: bool,
    at: Instant,
    inflight: &mut Sequencer<Started>,
) -> bool {
    shared.metrics.commands.fetch_add(1, Ordering::Relaxed);
    let spec = args.first().and_then(|name| lookup(name));
    let cmd = spec.map_or(Cmd::OTHER, |s| Cmd(s.index));
    if let Some(spec) = spec {
        conn.info.touch(spec.index, at);
    }
    // The footprint is taken before dispatch consumes the arguments; a
    // command queued by MULTI runs later, inside EXEC, and has none now.
    let footprint = match spec {
        Some(spec) if conn.multi.is_none() || spec.has(TRANSACTION_CONTROL) => {
            crate::resp::order::Footprint::of(spec, &args)
        }
        _ => crate::resp::order::Footprint::none(),
    };
    conn.read_now = conn.multi.is_none() && spec.is_some() && inflight.may_read_now(&footprint);
    let run = dispatch_spec(shared, conn, spec, args);
    conn.read_now = false;
    let started = Started {
        cmd,
        at,
        proto: conn.proto,
        permit,
    };
    let answered = matches!(run, Run::Now(_));
    inflight.push(started, footprint, run);
    answered
}

/// Encodes `reply` to the command `started`, answered at `done`.
fn encode(shared: &Shared, reply: &Reply, started: &Started, done: Instant, out: &mut BytesMut) {
    let outcome = match reply {
        Reply::Error(e) if e.starts_with("UNAVAILABLE") => Outcome::Unavailable,
        Reply::Error(_) => Outcome::Error,
        _ => Outcome::Ok,
    };
    if outcome != Outcome::Ok {
        shared
            .metrics
            .command_errors
            .fetch_add(1, Ordering::Relaxed);
    }
    shared.metrics.request(
        started.cmd,
        outcome,
        done.saturating_duration_since(started.at),
    );
    reply.encode(out, started.proto);
}

/// A reader that counts the bytes read since the last complete command and
/// notes when the first of them arrived. Past `max` it fails the read, so
/// one incomplete command never buffers more than `2 * max` bytes (the part
/// of it read along with the previous command is not counted); once a
/// command has stayed incomplete for `timeout`, it fails the read with
/// [`std::io::ErrorKind::TimedOut`].
#[derive(Debug)]
pub struct Metered<R> {
    inner: R,
    max: usize,
    pending: usize,
    started: Option<Instant>,
    timeout: Duration,
    /// Fires `timeout` after `started`; made the first time a read waits in
    /// the middle of a command, re-armed for each later incomplete command.
    stall: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
}

impl<R> Metered<R> {
    /// Wraps `inner`, allowing `max` bytes and `timeout` per incomplete command.
    pub fn new(inner: R, max: usize, timeout: Duration) -> Self {
        Metered {
            inner,
            max,
            pending: 0,
            started: None,
            timeout,
            stall: None,
        }
    }

    /// Ready (with the error to fail the read with) once the incomplete
    /// command that started at `since` has waited `timeout`; until then the
    /// timer wakes the task at that instant.
    fn poll_stall(&mut self, since: Instant, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let deadline = since + self.timeout;
        let sleep = match &mut self.stall {
            Some((armed, sleep)) => {
                if *armed != since {
                    sleep.as_mut().reset(deadline.into());
                    *armed = since;
                }
                sleep
            }
            None => {
                let sleep = Box::pin(tokio::time::sleep_until(deadline.into()));
                &mut self.stall.insert((since, sleep)).1
            }
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "command incomplete after incomplete_request_timeout_ms {}; closing",
                    self.timeout.as_millis()
                ),
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    /// A command was decoded: start counting afresh. Bytes of the next
    /// command already buffered are not counted, which errs by at most one
    /// read.
    pub fn command_done(&mut self) {
        self.pending = 0;
        self.started = None;
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Metered<R> {
    /// Reads at most what is left of the allowance, so a burst of small
    /// pipelined commands is decoded piece by piece; asked for more once the
    /// allowance is spent, the current command is too big.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pending >= this.max {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "request exceeds max_request_bytes {}",
                this.max
            ))));
        }
        let room = this.max - this.pending;
        let got;
        let polled = if room >= buf.remaining() {
            // The usual case: the reader fills the buffer directly, without
            // zeroing its spare capacity first.
            let before = buf.filled().len();
            let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
            got = buf.filled().len() - before;
            polled
        } else {
            let mut limited = ReadBuf::new(buf.initialize_unfilled_to(room));
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
            got = limited.filled().len();
            buf.advance(got);
            polled
        };
        if got > 0 {
            this.started.get_or_insert_with(Instant::now);
            this.pending += got;
        }
        if polled.is_pending() {
            if let Some(since) = this.started {
                if let Poll::Ready(e) = this.poll_stall(since, cx) {
                    return Poll::Ready(Err(e));
                }
            }
        }
        polled
    }
}
