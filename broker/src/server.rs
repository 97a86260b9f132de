//! Listeners and connections.
//!
//! Each connection has a reader and a writer task. The reader cuts frames, decodes them and
//! applies them one at a time in arrival order (so a connection's appends keep their order);
//! it hands the writer, in arrival order, a slot for each response. A produce waiting for its
//! fsync fills its slot later while the reader goes on, so pipelined produces share group
//! commits. The writer sends responses in request order, as Kafka requires. The slot channel is bounded, so a client that
//! pipelines without reading stops being read: memory per connection stays bounded by
//! `socket.request.max.bytes` plus the in-flight limit.
//!
//! TLS connections read differently, because the TLS cost is mostly not the cipher but the
//! syscalls and wake-ups around it: rustls asks its transport for 4 KiB at a time and clients'
//! TLS libraries (OpenSSL under librdkafka) send each 16 KiB record with its own write, so a
//! 1 MB produce would cost hundreds of `recv` calls and a wake-up of the reader (and a context
//! switch away from the client, on a busy machine) per record. A read-ahead buffer under rustls
//! turns the small reads into memory copies, and `SO_RCVLOWAT` keeps the kernel from waking the
//! reader until a worthwhile part of a started frame has arrived (see [`RcvLowat`]).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use rill_protocol::frame::{self, FrameError};
use rill_protocol::messages::{ApiKey, ResponseKind};
use rill_protocol::{decode_request, encode_response_chunks, peek_header, DecodeError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::broker::{Broker, ConnContext, Reply};
use crate::handlers::api_versions;
use crate::security::authorizer::{self, Outcome};
use crate::security::sasl::{Gate, Session};
use crate::security::{tls, ListenerSecurity, ANONYMOUS};

/// A TLS handshake must finish within this, so a silent client cannot hold a connection slot.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Ciphertext read ahead under rustls: one `recv` fills it, rustls' 4 KiB reads then copy from it.
const TLS_READ_AHEAD: usize = 64 * 1024;

/// The largest TLS record (TLS 1.2 allows 2 KiB of expansion over 16 KiB of plaintext).
const TLS_MAX_RECORD: usize = 16 * 1024 + 2048 + 5;

/// The most a reader waits to have queued before the kernel wakes it in the middle of a frame.
const RCVLOWAT_MAX: usize = 256 * 1024;

/// `SO_RCVLOWAT` moves in steps of this, so that lowering it as a frame fills costs a few calls.
const RCVLOWAT_STEP: usize = 64 * 1024;

/// A response slot, filled by the request's task; `None` means "send nothing" (acks=0).
type Slot = oneshot::Receiver<Option<Vec<Bytes>>>;

/// The request bytes one connection has in flight (read, not yet answered), in KiB, bounded
/// by `rill.max.inflight.bytes.per.connection`. Pipelined produce requests of a megabyte
/// each otherwise sat in memory by the dozen per connection while waiting for the quorum.
/// A frame larger than the whole budget takes all of it, so it is served alone.
struct InflightBytes {
    kib: Arc<tokio::sync::Semaphore>,
    total: u32,
}

impl InflightBytes {
    fn new(bytes: usize) -> Self {
        let total = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).max(1);
        InflightBytes { kib: Arc::new(tokio::sync::Semaphore::new(total as usize)), total }
    }

    async fn acquire(&self, bytes: usize) -> tokio::sync::OwnedSemaphorePermit {
        let want = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.total);
        self.kib.clone().acquire_many_owned(want).await.expect("the semaphore is never closed")
    }
}

/// Binds every configured listener and serves until the process ends.
pub async fn serve(broker: Arc<Broker>) -> anyhow::Result<()> {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let mut tasks = Vec::new();
    broker.security.spawn_reloaders();
    for l in &broker.config.listeners {
        let addr = format!("{}:{}", if l.host.is_empty() { "0.0.0.0" } else { &l.host }, l.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind listener {} on {addr}: {e}", l.name))?;
        tracing::info!(listener = %l.name, addr = %listener.local_addr()?, "listening");
        tasks.push(tokio::spawn(accept_loop(broker.clone(), listener, l.name.clone(), limit.clone())));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    name: String,
    limit: Arc<Semaphore>,
) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            if let Some(suppressed) = crate::conn_log::BAD_INPUT.allow() {
                tracing::warn!(%peer, suppressed, "max.connections reached; closing new connection");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ctx = ConnContext {
            listener: name.clone(),
            peer,
            client_id: Default::default(),
            principal: ANONYMOUS.to_string(),
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            accept_connection(broker, stream, ctx).await;
            drop(permit);
        });
    }
}

/// Runs the listener's TLS handshake if it has one, then serves the connection.
async fn accept_connection(broker: Arc<Broker>, stream: TcpStream, mut ctx: ConnContext) {
    let Some(sec) = broker.security.listener(&ctx.listener) else {
        tracing::error!(listener = %ctx.listener, "listener has no security settings; closing");
        return;
    };
    let Some(tls_ctx) = &sec.tls else {
        let (rd, wr) = stream.into_split();
        return serve_connection(broker, rd, wr, ctx, sec, None).await;
    };
    // What the reader can wait with, taken from the socket but not yet in the frame buffer: a
    // read only reaches the socket once the read-ahead is empty and rustls holds no plaintext,
    // and rustls decrypts every complete record it has, so only one incomplete record (at most
    // 16 KiB + 2 KiB + 5 bytes on the wire) can be left. Twice that, for margin.
    let lowat = RcvLowat::new(stream.as_raw_fd(), 2 * TLS_MAX_RECORD);
    let stream = BufReader::with_capacity(TLS_READ_AHEAD, stream);
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls_ctx.acceptor().accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(target: "rill::audit", event = "authentication", result = "failure", client = %ctx.peer,
                listener = %ctx.listener, mechanism = "TLS", reason = %e);
            return;
        }
        Err(_) => {
            tracing::info!(target: "rill::audit", event = "authentication", result = "failure", client = %ctx.peer,
                listener = %ctx.listener, mechanism = "TLS", reason = "handshake timed out");
            return;
        }
    };
    // mTLS: on an SSL listener the client certificate is the identity (on SASL_SSL SASL decides).
    if !sec.protocol.uses_sasl() {
        if let Some(dn) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| tls::subject_dn(c)) {
            ctx.principal = format!("User:{}", sec.principal_rules.apply(&dn));
        }
        tracing::info!(target: "rill::audit", event = "authentication", result = "success", principal = %ctx.principal,
            client = %ctx.peer, listener = %ctx.listener, mechanism = "TLS");
    }
    let (rd, wr) = tokio::io::split(tls);
    serve_connection(broker, rd, wr, ctx, sec, Some(lowat)).await
}

/// Sets a TCP socket's `SO_RCVLOWAT` to the part of the current frame that must still arrive,
/// so that epoll reports the socket readable (and the reader task wakes) once per large chunk
/// instead of once per TLS record.
///
/// Invariant, or the connection would hang: whenever the reader may wait, the mark is at most
/// the number of bytes the peer must still send to complete the frame it started. Bytes already
/// taken from the socket but not yet in the frame buffer when the reader waits (`slack` bounds
/// them) do not count, so the mark is at most the missing part less `slack`, and 1 (the
/// default) when that is below one step. Between frames it is 1: a new request may be any size.
/// The kernel still wakes the reader on end of stream, errors and memory pressure.
struct RcvLowat {
    fd: RawFd,
    slack: usize,
    current: usize,
}

impl RcvLowat {
    fn new(fd: RawFd, slack: usize) -> Self {
        RcvLowat { fd, slack, current: 1 }
    }

    /// Called before each read with the number of frame bytes still missing (0 when no frame
    /// header has been read). Raises the mark only when a frame starts and lowers it as the
    /// frame fills, so a 1 MB request costs a handful of `setsockopt` calls.
    fn update(&mut self, missing: usize) {
        let allowed = missing.saturating_sub(self.slack).min(RCVLOWAT_MAX);
        let target = (allowed / RCVLOWAT_STEP * RCVLOWAT_STEP).max(1);
        if target == self.current || (target > self.current && self.current != 1) {
            return;
        }
        let val = target as libc::c_int;
        // SAFETY: `fd` is the connection's socket, open for as long as the read half that calls
        // this lives; the option value is a c_int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&val as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // A failure leaves the previous mark; if that was higher than allowed now, stop raising it.
        if rc == 0 {
            self.current = target;
        } else {
            self.slack = usize::MAX;
        }
    }
}

async fn serve_connection<R, W>(
    broker: Arc<Broker>,
    rd: R,
    wr: W,
    ctx: ConnContext,
    sec: Arc<ListenerSecurity>,
    lowat: Option<RcvLowat>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let opened = crate::conn_log::opened(&ctx);
    // Shares the client id the reader records (an Arc inside), for the close line.
    let log_ctx = ctx.clone();
    let (tx, rx) = mpsc::channel::<Slot>(broker.config.max_inflight_requests_per_connection.max(1));
    let writer = tokio::spawn(write_loop(wr, rx));
    let reason = read_loop(&broker, rd, tx, ctx, Session::new(sec), lowat).await;
    // The writer drains every slot already queued, then ends when the channel closes.
    let _ = writer.await;
    crate::conn_log::closed(&log_ctx, opened, reason);
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Slot>) {
    while let Some(slot) = rx.recv().await {
        match slot.await {
            Ok(Some(chunks)) => {
                if write_chunks(&mut wr, &chunks).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            // The handler task died (a bug): the stream would be out of order, so close.
            Err(_) => return,
        }
    }
    let _ = wr.shutdown().await;
}

/// Writes a response's chunks with as few syscalls as the kernel allows.
async fn write_chunks<W: AsyncWrite + Unpin>(wr: &mut W, chunks: &[Bytes]) -> std::io::Result<()> {
    let (mut i, mut offset) = (0, 0);
    while i < chunks.len() {
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&chunks[i][offset..])
            .chain(chunks[i + 1..].iter().map(|c| &c[..]))
            .map(std::io::IoSlice::new)
            .collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while i < chunks.len() && n >= chunks[i].len() - offset {
            n -= chunks[i].len() - offset;
            i += 1;
            offset = 0;
        }
        offset += n;
    }
    Ok(())
}

fn encode(api_key: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Option<Vec<Bytes>> {
    match encode_response_chunks(api_key, version, correlation_id, body) {
        Ok(chunks) => Some(chunks),
        Err(e) => {
            tracing::error!(api = ?api_key, version, error = %e, "response encoding failed");
            None
        }
    }
}

/// Reads and dispatches requests until the peer closes or sends something we must not answer.
async fn read_loop<R: AsyncRead + Unpin>(
    broker: &Arc<Broker>,
    mut rd: R,
    tx: mpsc::Sender<Slot>,
    mut ctx: ConnContext,
    mut session: Session,
    mut lowat: Option<RcvLowat>,
) -> &'static str {
    let ctx = &mut ctx;
    let max = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let budget = InflightBytes::new(broker.config.max_inflight_bytes_per_connection);
    loop {
        let size = loop {
            match frame::check(&buf, max) {
                Ok(Some(size)) => break size,
                Ok(None) => {}
                Err(FrameError::TooLarge { size, max }) => {
                    if let Some(suppressed) = crate::conn_log::BAD_INPUT.allow() {
                        tracing::warn!(peer = %ctx.peer, suppressed, size, max, "request larger than socket.request.max.bytes; closing");
                    }
                    return "frame too large";
                }
                Err(FrameError::Negative(n)) => {
                    if let Some(suppressed) = crate::conn_log::BAD_INPUT.allow() {
                        tracing::warn!(peer = %ctx.peer, suppressed, size = n, "negative frame size; closing");
                    }
                    return "bad frame";
                }
            }
            // Grow to the announced frame size at most (bounded by `max`).
            let mut missing = 0;
            if buf.len() >= 4 {
                let want = 4 + i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                missing = want.saturating_sub(buf.len());
                buf.reserve(missing);
            }
            if let Some(lowat) = &mut lowat {
                lowat.update(missing);
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) => return if buf.is_empty() { "peer closed" } else { "peer closed mid-frame" },
                Ok(_) => {}
                Err(_) => return "read error",
            }
        };
        let received = crate::metrics::now();
        buf.advance(4);
        let payload = buf.split_to(size).freeze();
        // Held until this request's response is ready: no more frames are read meanwhile.
        let permit = budget.acquire(size).await;
        let prefix = match peek_header(&payload) {
            Ok(p) => p,
            Err(e) => {
                if let Some(suppressed) = crate::conn_log::BAD_INPUT.allow() {
                    tracing::warn!(peer = %ctx.peer, suppressed, error = %e, "malformed request; closing");
                }
                return "malformed request";
            }
        };
        let request = match decode_request(payload, api_versions::supported) {
            Ok(r) => r,
            Err(DecodeError::UnsupportedVersion { api_key: ApiKey::ApiVersions, .. }) => {
                // Answer in v0 so any client can read the table and retry.
                let body = ResponseKind::ApiVersions(api_versions::unsupported_version_response());
                let (stx, srx) = oneshot::channel();
                let _ = stx.send(encode(ApiKey::ApiVersions, 0, prefix.correlation_id, &body));
                if tx.send(srx).await.is_err() {
                    return "writer gone";
                }
                continue;
            }
            Err(e) => {
                if let Some(suppressed) = crate::conn_log::BAD_INPUT.allow() {
                    tracing::warn!(peer = %ctx.peer, suppressed, client_api_key = prefix.api_key, version = prefix.api_version, error = %e, "cannot serve request; closing connection");
                }
                return "undecodable request";
            }
        };
        let api_key = request.api_key;
        let version = request.version();
        let correlation_id = request.correlation_id();
        // Authentication first (SASL state, session expiry), then authorization.
        let request = match session.gate(&broker.security, request, ctx) {
            Gate::Pass(r) => r,
            Gate::Answer { body, delay, close } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let (stx, srx) = oneshot::channel();
                let _ = stx.send(encode(api_key, version, correlation_id, &body));
                if tx.send(srx).await.is_err() {
                    return "writer gone";
                }
                if close {
                    return "authentication failed";
                }
                continue;
            }
            Gate::Close(reason) => return reason,
        };
        let (request, patch) = match authorizer::check(broker, &broker.security, request, ctx) {
            Outcome::Serve(r, patch) => (r, patch),
            Outcome::Deny(body) => {
                let (stx, srx) = oneshot::channel();
                let _ = stx.send(encode(api_key, version, correlation_id, &body));
                if tx.send(srx).await.is_err() {
                    return "writer gone";
                }
                continue;
            }
            Outcome::Close(reason) => return reason,
        };
        let (stx, srx) = oneshot::channel();
        if tx.send(srx).await.is_err() {
            return "writer gone";
        }
        if ctx.client_id.get().is_none() {
            let _ = ctx.client_id.set(request.header.client_id.as_deref().unwrap_or("").to_string());
        }
        let timer = crate::metrics::RequestTimer::start(api_key, received);
        match broker.serve(request, ctx).await {
            Reply::Now(response) => {
                timer.done(response.as_ref());
                let response = response.map(|r| patch.apply(r, &broker.security, ctx));
                let _ = stx.send(response.and_then(|body| encode(api_key, version, correlation_id, &body)));
                drop(permit);
            }
            Reply::Later(pending) => {
                let timer = timer.deferred();
                // Only a partly denied produce needs the connection's identity after the handler.
                let denied = (!patch.is_none()).then(|| (broker.security.clone(), ctx.clone()));
                tokio::spawn(async move {
                    let response = pending.await;
                    timer.done(response.as_ref());
                    let response = match denied {
                        Some((security, ctx)) => response.map(|r| patch.apply(r, &security, &ctx)),
                        None => response,
                    };
                    let _ = stx.send(response.and_then(|body| encode(api_key, version, correlation_id, &body)));
                    drop(permit);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcvlowat(fd: RawFd) -> usize {
        let mut val: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: fd is an open socket owned by the test; val and len are valid out-pointers.
        let rc = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, (&mut val as *mut libc::c_int).cast(), &mut len)
        };
        assert_eq!(rc, 0);
        val as usize
    }

    #[test]
    fn rcvlowat_never_exceeds_what_the_frame_still_needs() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let slack = 2 * TLS_MAX_RECORD;
        let mut lowat = RcvLowat::new(server.as_raw_fd(), slack);
        let mut calls = 0;
        // A 1 MB frame arriving one TLS record at a time, then the next frame's header.
        let frame = 1 << 20;
        let mut missing = frame;
        while missing > 0 {
            let before = lowat.current;
            lowat.update(missing);
            calls += usize::from(lowat.current != before);
            assert_eq!(rcvlowat(server.as_raw_fd()), lowat.current);
            assert!(lowat.current == 1 || lowat.current + slack <= missing, "{} for {missing}", lowat.current);
            missing = missing.saturating_sub(16 * 1024);
        }
        lowat.update(0);
        assert_eq!(rcvlowat(server.as_raw_fd()), 1, "between frames any request size must wake the reader");
        assert!(calls <= 7, "{calls} setsockopt calls for one frame");
        // A small request never raises the mark.
        lowat.update(300);
        assert_eq!(lowat.current, 1);
    }
}
