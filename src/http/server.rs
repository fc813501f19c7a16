//! Serving [`super::app`] on a socket with hyper's HTTP/1 connection directly, for what
//! `axum::serve` does not bound:
//!
//! - **Header-read timeout** (`[http] header_timeout`): a client must send its request head
//!   within it, or hyper closes the connection (without an answer: no 408). The timer also
//!   runs while a keep-alive connection is idle between requests, so idle connections are
//!   closed too.
//! - **Connection lifetime** ([`MAX_CONNECTION_LIFETIME`]): hyper has no write timeout, so a
//!   client that stops reading a large answer would hold its slot forever. After the
//!   lifetime a connection is asked to finish its request and close, and is dropped if it
//!   has not within one more header timeout.
//! - **Header size**: the read buffer and the head are capped at [`MAX_HEAD_BYTES`]; a
//!   larger head gets `431 Request Header Fields Too Large` from hyper and a close.
//! - **Connection cap** (`[http] max_connections`): a new client is always accepted at
//!   once; past the cap it takes the slot of the connection that has made no progress for
//!   the longest ([`super::conns`]). A refused or queued connection would fail the kubelet's
//!   probe and restart a healthy target; an evicted slow one loses nothing it was using.
//! - **Parking**: until its whole request head has arrived, a connection holds only its
//!   socket (the head is looked at with `MSG_PEEK`); hyper and its buffers come after.
//! - **One request per connection** (`Connection: close`): an answered connection closes,
//!   so no idle keep-alive connection holds a slot or a buffer. The kubelet opens a
//!   connection per probe anyway; Prometheus reconnects each scrape.
//! - **Listeners**: the main one serves everything; the probe listener (`probe_listen`,
//!   optional) serves only `/healthz`, `/livez` and `/readyz`, with slots of its own, so
//!   probes never share a budget with scrapes.
//! - **Accept errors** (EMFILE, ENFILE, ENOBUFS, ...): logged and retried after a pause;
//!   never fatal, as leakwatch's own trouble must not end its probes.
//! - **Shutdown**: stop accepting, ask every connection to finish its request and close,
//!   wait at most [`SHUTDOWN_GRACE`], then drop what remains.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::conns::{Slot, Table};
use super::{app, probe_app, AppState};
use crate::config::HttpConfig;

/// How long in-flight connections may take to finish once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The largest request head (request line and headers) read; larger gets 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The longest a connection is kept; then it finishes its request and closes.
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The pause after a failed `accept` before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Binds the listening socket, with an error that names the address and says what to do.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    listen(addr).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => {
                "the address is already in use (another leakwatch, or another service on \
                 this port?); choose another with `listen` in the config or --listen"
            }
            io::ErrorKind::AddrNotAvailable => "this host has no such address",
            io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
            }
            _ => "",
        };
        match hint {
            "" => anyhow!("cannot listen on {addr}: {e}"),
            hint => anyhow!("cannot listen on {addr}: {hint} ({e})"),
        }
    })
}

/// The accept queue asked for: the kernel's cap (`net.core.somaxconn`, 4096 by default
/// since Linux 5.4) wins. While more clients connect than there are slots, the queue holds
/// the ones not yet accepted; a full queue drops new SYNs, which costs a probe a 1 s
/// retransmission, so the longest queue the kernel allows.
const BACKLOG: u32 = 65_535;

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves [`super::app`] on `listener`, and [`super::probe_app`] on `probes` if given,
/// until `shutdown` completes, then drains the connections for at most [`SHUTDOWN_GRACE`].
/// Accept errors are logged and retried, so this returns only after shutdown.
pub async fn serve(
    listener: TcpListener,
    probes: Option<TcpListener>,
    state: AppState,
    cfg: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = ConnLimits {
        lifetime: MAX_CONNECTION_LIFETIME,
        stall: cfg.header_timeout,
    };
    let Some(probes) = probes else {
        return serve_with(listener, app(state), cfg, limits, shutdown).await;
    };
    let (stop, stopped) = watch::channel(false);
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let probe_router = probe_app(state.clone());
    let (probe_cfg, probe_stop) = (cfg.clone(), until(stopped.clone()));
    let probe_task = tokio::spawn(async move {
        serve_with(probes, probe_router, &probe_cfg, limits, probe_stop).await
    });
    let main = serve_with(listener, app(state), cfg, limits, until(stopped));
    let (main_done, ()) = tokio::join!(main, async {
        shutdown.await;
        let _ = stop.send(true);
    });
    let probes_done = probe_task.await.map_err(io::Error::other)?;
    main_done.and(probes_done)
}

/// Bounds on one connection besides hyper's header timeout.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnLimits {
    /// After this long the connection is asked to finish its request and close ...
    pub lifetime: Duration,
    /// ... and is dropped if it has not within this much more (a client not reading).
    pub stall: Duration,
}

/// Serves `router` on `listener` (one listener's loop), with the connection limits as a
/// parameter (tests shorten them).
pub(super) async fn serve_with(
    listener: TcpListener,
    router: Router,
    cfg: &HttpConfig,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let builder = conn_builder(cfg);
    let max = cfg.max_connections.max(1);
    let table = Table::new(max);
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    let mut accept_errors = 0u64;
    let mut evictions_logged = 0u64;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                accept_errors = 0;
                let (slot, evicted, gave_way) = table.admit(peer, std::time::Instant::now());
                if let Some(old) = gave_way {
                    log_eviction(&table, old, &mut evictions_logged, max);
                }
                let conn = Conn {
                    peer,
                    builder: builder.clone(),
                    router: router.clone(),
                    limits,
                    header_timeout: cfg.header_timeout,
                    drain: drain_rx.clone(),
                    slot: Arc::new(slot),
                    evicted,
                };
                // Not awaited: the next accept may come first, at most tokio's cooperative
                // budget (128) of them before the new task runs, far fewer than the slots a
                // flood needs to make a probe the stalest connection. (Yielding here made
                // the loop wait behind a slow handler on a multi-threaded runtime.)
                conns.spawn(conn.run(stream));
            }
            Err(e) => {
                accept_errors += 1;
                log_accept_error(&e, accept_errors);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_RETRY) => {}
                }
            }
        }
        reap(&mut conns);
    }
    drop(listener);
    drain(conns, &drain_tx).await;
    Ok(())
}

/// Says when connections start being evicted, then at powers of two: a flood would
/// otherwise log a line per connection.
fn log_eviction(table: &Table, peer: SocketAddr, logged: &mut u64, max: usize) {
    let total = table.evicted_total();
    if total > *logged && total.is_power_of_two() {
        *logged = total;
        tracing::warn!(
            "http: more clients than the {max} slots (http.max_connections): {total} \
             connection(s) that had made no progress for the longest were closed to serve \
             new ones, the last from {peer}"
        );
    }
}

fn conn_builder(cfg: &HttpConfig) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(false);
    b
}

/// Collects finished connection tasks; a panic in one is logged (it never reaches here
/// from client input, but it must not pass silently either).
fn reap(conns: &mut JoinSet<()>) {
    while let Some(done) = conns.try_join_next() {
        if let Err(e) = done {
            if e.is_panic() {
                tracing::error!("http: a connection task panicked: {e}");
            }
        }
    }
}

fn log_accept_error(e: &io::Error, consecutive: u64) {
    // Once, then at powers of two: an fd shortage would otherwise log ten lines a second.
    if consecutive.is_power_of_two() {
        tracing::warn!(
            "http: accept failed ({e}); retrying every {}ms ({consecutive} in a row)",
            ACCEPT_RETRY.as_millis()
        );
    }
}

/// Stops every connection gracefully, waiting at most [`SHUTDOWN_GRACE`].
async fn drain(mut conns: JoinSet<()>, drain_tx: &watch::Sender<bool>) {
    let _ = drain_tx.send(true);
    let all = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!(
            "http: {} connection(s) still open after {}s of shutdown grace; closing them",
            conns.len(),
            SHUTDOWN_GRACE.as_secs()
        );
        conns.abort_all();
    }
}

/// One accepted connection and what it needs; holds its slot until dropped.
struct Conn {
    peer: SocketAddr,
    builder: http1::Builder,
    router: Router,
    limits: ConnLimits,
    /// A client must send its whole request head within this long.
    header_timeout: Duration,
    drain: watch::Receiver<bool>,
    slot: Arc<Slot>,
    /// Fires when a new client took this connection's slot: drop the connection.
    evicted: oneshot::Receiver<()>,
}

impl Conn {
    /// Waits, holding nothing but the socket, until the client's whole request head has
    /// arrived (within the header timeout); then serves it. Dropped on eviction or drain.
    async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let deadline = tokio::time::sleep(self.header_timeout);
        let parked = tokio::select! {
            head = whole_head(&stream) => head,
            _ = &mut self.evicted => Err("its slot went to a new client"),
            () = deadline => Err("no whole request head within the header timeout"),
            _ = self.drain.changed() => Err("shutting down"),
        };
        match parked {
            Ok(()) => {
                self.slot.progress(std::time::Instant::now());
                // Boxed: the parked task stays small, hyper's state is allocated only now.
                Box::pin(self.serve(stream)).await;
            }
            Err(why) => tracing::debug!("http: closing {}: {why}", self.peer),
        }
    }

    /// Serves the request with hyper. On drain or at the end of its lifetime, asks hyper to
    /// finish the request in flight and close; past the lifetime plus the stall bound, or
    /// when evicted, drops it.
    async fn serve(mut self, stream: TcpStream) {
        let (router, slot) = (self.router.clone(), Arc::clone(&self.slot));
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            slot.progress(std::time::Instant::now());
            router.clone().oneshot(req)
        });
        let conn = self.builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let deadline = tokio::time::sleep(self.limits.lifetime);
        tokio::pin!(deadline);
        let mut closing = false;
        let result = loop {
            tokio::select! {
                result = conn.as_mut() => break result,
                _ = &mut self.evicted => {
                    tracing::debug!("http: closing {}: its slot went to a new client", self.peer);
                    return;
                }
                _ = self.drain.changed(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = &mut deadline => {
                    if closing {
                        tracing::debug!("http: dropping {}: not done closing", self.peer);
                        return;
                    }
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    deadline.as_mut().reset(tokio::time::Instant::now() + self.limits.stall);
                }
            }
        };
        // Timeouts, oversized heads, garbage and resets are the client's doing: debug only.
        if let Err(e) = result {
            tracing::debug!("http: connection from {} ended: {e}", self.peer);
        }
    }
}

/// Waits until the socket holds a whole request head (or more bytes than a head may
/// have, for hyper to refuse with 431) without reading it: `MSG_PEEK` into a buffer of the
/// thread's, so a waiting connection holds no buffer of its own. An incomplete head clears
/// the socket's readiness and waits for more bytes; an incomplete head followed by the
/// client's end of stream can never be completed, and ends the connection (its readiness
/// would otherwise never clear).
async fn whole_head(stream: &TcpStream) -> Result<(), &'static str> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
    loop {
        let ready = stream
            .ready(Interest::READABLE)
            .await
            .map_err(|_| "failed waiting for a request")?;
        match stream.try_io(Interest::READABLE, || peek_head(fd)) {
            Ok(true) => return Ok(()),
            Ok(false) => return Err("closed before sending a request"),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if ready.is_read_closed() {
                    return Err("closed with half a request head");
                }
            }
            Err(_) => return Err("reset before sending a request"),
        }
    }
}

thread_local! {
    static PEEK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; MAX_HEAD_BYTES]);
}

/// `Ok(true)`: a whole head (or a head too large) is there; `Ok(false)`: end of stream;
/// `WouldBlock`: not yet.
fn peek_head(fd: std::os::fd::RawFd) -> io::Result<bool> {
    use nix::sys::socket::{recv, MsgFlags};
    PEEK.with_borrow_mut(|buf| {
        let n = recv(fd, buf, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT)?;
        match n {
            0 => Ok(false),
            n if n >= buf.len() || head_is_whole(&buf[..n]) => Ok(true),
            _ => Err(io::ErrorKind::WouldBlock.into()),
        }
    })
}

/// Whether `bytes` hold a request head up to its blank line (CRLF, or the bare LF that
/// hyper also accepts).
fn head_is_whole(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"\r\n\r\n") || bytes.windows(2).any(|w| w == b"\n\n")
}
