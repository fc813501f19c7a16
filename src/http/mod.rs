//! Placeholder: replaced by the HTTP server (branch `http`).
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::HttpConfig;
use crate::snapshot::Snapshot;

#[derive(Clone)]
pub struct AppState {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub token: watch::Receiver<Option<Arc<str>>>,
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    Ok(TcpListener::bind(addr).await?)
}

pub async fn serve(
    listener: TcpListener,
    state: AppState,
    cfg: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = (listener, state, cfg);
    shutdown.await;
    Ok(())
}
