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
//! - **Connection cap** (`[http] max_connections`): at the cap the loop stops *accepting*
//!   until a connection ends. New clients wait in the kernel's accept queue instead of
//!   being refused: a refused connection would fail the kubelet's probe and restart a
//!   healthy target, while a queued one is answered as soon as a slow client times out.
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::{app, AppState};
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
    TcpListener::bind(addr).await.map_err(|e| {
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

/// Serves [`super::app`] on `listener` until `shutdown` completes, then drains the
/// connections for at most [`SHUTDOWN_GRACE`]. Accept errors are logged and retried, so
/// this returns only after shutdown.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    cfg: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = ConnLimits {
        lifetime: MAX_CONNECTION_LIFETIME,
        stall: cfg.header_timeout,
    };
    serve_with(listener, state, cfg, limits, shutdown).await
}

/// Bounds on one connection besides hyper's header timeout.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnLimits {
    /// After this long the connection is asked to finish its request and close ...
    pub lifetime: Duration,
    /// ... and is dropped if it has not within this much more (a client not reading).
    pub stall: Duration,
}

/// [`serve`] with the connection limits as a parameter (tests shorten them).
pub(super) async fn serve_with(
    listener: TcpListener,
    state: AppState,
    cfg: &HttpConfig,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let router = app(state);
    let builder = conn_builder(cfg);
    let permits = cfg.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(permits));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    let mut accept_errors = 0u64;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        match accepted {
            Ok((stream, peer, permit)) => {
                accept_errors = 0;
                let conn = Conn {
                    peer,
                    builder: builder.clone(),
                    router: router.clone(),
                    limits,
                    drain: drain_rx.clone(),
                    _slot: permit,
                };
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

fn conn_builder(cfg: &HttpConfig) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    b
}

/// Waits for a free connection slot, then accepts one connection.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> io::Result<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    // The semaphore is never closed, so acquiring only ever waits.
    let Ok(permit) = Arc::clone(slots).acquire_owned().await else {
        return Err(io::Error::other("the connection semaphore is closed"));
    };
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, permit))
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
    drain: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
}

impl Conn {
    /// Serves the connection. On drain or at the end of its lifetime, asks hyper to finish
    /// the request in flight and close; past the lifetime plus the stall bound, drops it.
    async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let router = self.router.clone();
        let service =
            hyper::service::service_fn(move |req: Request<Incoming>| router.clone().oneshot(req));
        let conn = self.builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let deadline = tokio::time::sleep(self.limits.lifetime);
        tokio::pin!(deadline);
        let mut closing = false;
        let result = loop {
            tokio::select! {
                result = conn.as_mut() => break result,
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
