//! The `/metrics` body, rendered once per snapshot and shared by every scrape of it.
//!
//! A render ([`crate::metrics::render`]: a fresh registry, every family encoded, and the
//! `process_*` metrics read from /proc/self) costs some 0.3 ms here; the
//! snapshot it reads changes once per tick. Rendered per request, a flood of scrapes kept
//! the one runtime thread rendering, and a probe on the same listener queued behind a
//! thousand renders (1.3 s measured: docs/performance.md). Now the body is rendered when
//! the snapshot changed, or when the last render is older than [`PROCESS_MAX_AGE`] (so
//! leakwatch's own `process_*` figures stay fresh while ticks stall), and every other
//! scrape gets the same bytes: a flood costs the runtime the writes, not the renders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::snapshot::Snapshot;

/// The oldest a body is served while the snapshot has not changed: its `process_*` figures
/// (leakwatch's CPU, memory and fds) are read at the render.
pub(super) const PROCESS_MAX_AGE: Duration = Duration::from_secs(1);

/// The last body rendered, and which snapshot and when.
struct Last {
    /// Held, so its address names it (no other snapshot can take it meanwhile).
    snapshot: Arc<Snapshot>,
    at: Instant,
    body: Bytes,
}

/// One listener's rendered `/metrics` (the router holds it).
#[derive(Default)]
pub(super) struct Rendered {
    last: Mutex<Option<Last>>,
    renders: AtomicU64,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("renders", &self.renders())
            .finish_non_exhaustive()
    }
}

impl Rendered {
    fn lock(&self) -> MutexGuard<'_, Option<Last>> {
        // A panic in a render leaves either the old body or none: carry on.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The body for `snapshot` now.
    pub(super) fn body(&self, snapshot: &Arc<Snapshot>) -> Bytes {
        self.body_at(snapshot, Instant::now())
    }

    /// The body for `snapshot` at `now`: the last one if it was rendered from this snapshot
    /// less than [`PROCESS_MAX_AGE`] ago, else a new render. The lock is held across the
    /// render, so concurrent scrapes of one snapshot render it once.
    pub(super) fn body_at(&self, snapshot: &Arc<Snapshot>, now: Instant) -> Bytes {
        let mut last = self.lock();
        if let Some(l) = last.as_ref() {
            let fresh = now.saturating_duration_since(l.at) < PROCESS_MAX_AGE;
            if fresh && Arc::ptr_eq(&l.snapshot, snapshot) {
                return l.body.clone();
            }
        }
        let body = Bytes::from(crate::metrics::render(snapshot));
        self.renders.fetch_add(1, Ordering::Relaxed);
        // At most one a second and one a tick: the flood test counts these.
        tracing::debug!(
            seq = snapshot.seq,
            bytes = body.len(),
            "http: /metrics rendered"
        );
        *last = Some(Last {
            snapshot: Arc::clone(snapshot),
            at: now,
            body: body.clone(),
        });
        body
    }

    /// Renders since the listener started.
    pub(super) fn renders(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }
}
