//! `/metrics`: the published [`Snapshot`] in the Prometheus text format (version 0.0.4).
//!
//! Each render builds a fresh registry from the snapshot ([`out`]), so nothing is global
//! and a target removed from the config disappears from the next scrape. The families and
//! their HELP texts are in [`families`]; one target's series in [`target`]. A value the
//! snapshot does not know is left out, never exported as 0 ("unknown is not zero").
//! Counters whose totals the snapshot keeps (restarts, collector errors, ticks) are fresh
//! counters raised to that total.

pub mod families;
mod out;
mod target;

#[cfg(test)]
mod tests;

use prometheus::process_collector::ProcessCollector;

use crate::fleet::{FleetStatus, Mode};
use crate::snapshot::Snapshot;

use families::*;
use out::Out;

/// The text format's content type, for the `Content-Type` header of `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole `/metrics` body: every target's series, leakwatch's own state, and the
/// `process_*` metrics of the leakwatch process itself (CPU, resident memory, open fds).
pub fn render(snapshot: &Snapshot) -> String {
    let out = fill(snapshot);
    out.register(Box::new(ProcessCollector::for_self()));
    out.encode()
}

/// [`render`] without the `process_*` metrics: a function of the snapshot alone (the
/// golden file and tests compare it byte for byte).
pub fn render_targets(snapshot: &Snapshot) -> String {
    fill(snapshot).encode()
}

fn fill(snapshot: &Snapshot) -> Out {
    let out = Out::new();
    global(&out, snapshot);
    fleet(&out, snapshot.fleet.as_ref());
    for t in &snapshot.targets {
        target::export(&out, t, snapshot.peer_labels);
    }
    out
}

fn global(out: &Out, s: &Snapshot) {
    out.put(&BUILD_INFO, &[&s.version], 1.0);
    out.put(&TICKS, &[], s.ticks_total as f64);
    out.put(&TICKS_SKIPPED, &[], s.ticks_skipped_total as f64);
    out.put(&TICK_DURATION, &[], s.tick_duration_us as f64 / 1e6);
    out.put(&CONFIG_RELOADS, &["ok"], s.config.reloads_ok as f64);
    out.put(&CONFIG_RELOADS, &["failed"], s.config.reloads_failed as f64);
    let last_ok = s.config.last_reload_error.is_none();
    out.put(&CONFIG_LAST_RELOAD_OK, &[], if last_ok { 1.0 } else { 0.0 });
}

/// The fleet's slots, or `leakwatch_fleet_mode{group="",mode="off"} 1` without `[fleet]`.
fn fleet(out: &Out, f: Option<&FleetStatus>) {
    let Some(f) = f else {
        out.put(&FLEET_MODE, &["", "off"], 1.0);
        return;
    };
    let g = f.group.as_str();
    for m in [Mode::Coordinated, Mode::LocalFallback] {
        out.put(
            &FLEET_MODE,
            &[g, m.as_str()],
            f64::from(u8::from(f.mode == m)),
        );
    }
    out.put(&FLEET_MODE, &[g, "off"], 0.0);
    out.put(&FLEET_SLOTS, &[g], f64::from(f.slots_total));
    out.put(&FLEET_SLOTS_HELD, &[g], f.slots_held_observed() as f64);
    out.put(
        &FLEET_SLOT_HELD,
        &[g],
        f64::from(u8::from(f.held.is_some())),
    );
    out.put(
        &FLEET_DEFERRED,
        &[g],
        f64::from(u8::from(f.deferred.is_some())),
    );
    let waited = f.deferred.as_ref().map_or(0.0, |d| d.waited_s);
    out.put(&FLEET_DEFERRED_SECONDS, &[g], waited);
    // Every known label value, 0 until it happens: rate() needs the series before the event.
    let counts = |family, known: &[&str], totals: &std::collections::BTreeMap<String, u64>| {
        for k in known {
            out.put(family, &[g, k], 0.0);
        }
        for (k, n) in totals {
            out.put(family, &[g, k], *n as f64);
        }
    };
    counts(
        &FLEET_ACQUIRE,
        &["acquired", "busy", "conflict", "error"],
        &f.acquire_total,
    );
    counts(
        &FLEET_OVERRIDE,
        &["deadline", "max_wait", "fallback_stagger"],
        &f.override_total,
    );
    counts(
        &FLEET_RELEASE,
        &["healthy", "max_hold", "shutdown", "lost"],
        &f.release_total,
    );
    counts(&FLEET_API_ERRORS, &[], &f.api.errors_total);
    out.put(&FLEET_API_UP, &[g], f64::from(u8::from(f.api.up)));
    out.put_histogram(&FLEET_API_REQUEST, &[g], &f.api.latency);
}
