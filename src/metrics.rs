//! `/metrics`: the published [`Snapshot`] in Prometheus text format.

use crate::snapshot::Snapshot;

/// The whole `/metrics` body: every target's series and leakwatch's own process metrics.
pub fn render(snapshot: &Snapshot) -> String {
    let _ = snapshot;
    String::new()
}
