//! The HTTP endpoints: `/healthz`, `/healthz/{name}`, `/livez`, `/readyz`, `/metrics` and
//! `/status`, all answered from the latest published [`Snapshot`] (never from /proc), so a
//! probe is answered from memory in microseconds even while a slow poll is running.
//!
//! [`app`] builds the router apart from [`serve`] (axum's `examples/testing` style): the
//! handlers are tested with `tower::ServiceExt::oneshot`, without a socket. [`serve`] runs
//! hyper directly because it needs what `axum::serve` lacks: a header-read timeout, a bound
//! on the header size, a connection cap and a bounded graceful shutdown.
//!
//! Rules every response follows ([`guard`]): only GET and HEAD (anything else is 405 with
//! `Allow: GET, HEAD`); a request with a body is 413 before routing; `Cache-Control:
//! no-store`; `/metrics` and `/status` need the bearer token when one is configured, while
//! the probes stay open (the kubelet sends no secrets).
//!
//! [`probe_app`] is the probes alone, for the probe listener (`probe_listen`): a port the
//! kubelet asks and nothing else needs, with connection slots of its own.

mod conns;
mod export;
mod guard;
mod health;
mod probes;
mod rendered;
mod server;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::State;
use axum::middleware;
use axum::routing::{get, MethodRouter};
use axum::Router;
use tokio::sync::watch;

use crate::snapshot::Snapshot;
use rendered::Rendered;

pub use guard::constant_time_eq;
pub use server::{bind, serve, MAX_CONNECTION_LIFETIME, SHUTDOWN_GRACE};

/// What the handlers read: the published snapshot and the bearer token, each on a `watch`
/// channel so the poll loop publishes a new snapshot and a config reload swaps the token
/// without restarting the server.
#[derive(Debug, Clone)]
pub struct AppState {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// `None`: `/metrics` and `/status` are open.
    pub token: watch::Receiver<Option<Arc<str>>>,
}

impl AppState {
    /// The current snapshot (a cheap `Arc` clone; the channel is not held).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.borrow())
    }

    /// The current token.
    pub fn token(&self) -> Option<Arc<str>> {
        self.token.borrow().clone()
    }
}

/// The whole HTTP surface as a router; [`serve`] puts it on a socket. Its `/metrics` body is
/// rendered once per snapshot ([`rendered`]), shared by every clone of the router.
pub fn app(state: AppState) -> Router {
    app_rendering(state, Arc::default())
}

/// [`app`], its `/metrics` bodies kept in `rendered` (tests count the renders).
fn app_rendering(state: AppState, rendered: Arc<Rendered>) -> Router {
    let metrics = move |State(state): State<AppState>| {
        let rendered = Arc::clone(&rendered);
        async move { export::metrics(&state, &rendered) }
    };
    let protected = Router::new()
        .route("/metrics", only_get(get(metrics)))
        .route("/status", only_get(get(export::status)))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::require_token,
        ));
    finish(
        probe_routes().merge(protected).fallback(guard::not_found),
        state,
    )
}

/// The probes alone: `/healthz`, `/healthz/{name}`, `/livez`, `/readyz`, under the same
/// rules as [`app`]; every other path is 404.
pub fn probe_app(state: AppState) -> Router {
    finish(probe_routes().fallback(guard::probes_only), state)
}

fn probe_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", only_get(get(health::healthz)))
        .route("/healthz/{name}", only_get(get(health::healthz_target)))
        .route("/livez", only_get(get(probes::livez)))
        .route("/readyz", only_get(get(probes::readyz)))
}

/// The rules every answer follows: no bodies, `Cache-Control: no-store`.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .with_state(state)
        .layer(middleware::from_fn(guard::reject_body))
        .layer(middleware::map_response(guard::no_store))
}

/// A GET route (HEAD comes with it) whose other methods answer 405 with `Allow: GET, HEAD`.
fn only_get(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(guard::method_not_allowed)
}
