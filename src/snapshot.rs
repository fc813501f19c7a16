//! The published state: one immutable [`Snapshot`] per tick, shared with HTTP through a
//! `watch` channel. `/healthz`, `/metrics` and `/status` read only this; they never touch
//! /proc, so a probe is answered from memory even while a slow poll is running.

use serde::Serialize;

use crate::actions::ActionsStatus;
use crate::error::UnknownKind;
use crate::fleet::FleetStatus;
use crate::judge::{Enforcement, Judged, Verdict};
use crate::sample::{Sample, Source, TargetId};

/// Ticks without a published snapshot after which it is stale: `/healthz` fails open and
/// `/livez` reports the stall.
pub const STALE_AFTER_INTERVALS: u64 = 3;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub version: String,
    /// Increments with every publication.
    pub seq: u64,
    pub started_unix_ms: u64,
    pub published_unix_ms: u64,
    /// `CLOCK_MONOTONIC` milliseconds of the publication (staleness is judged on this).
    pub published_mono_ms: u64,
    pub interval_ms: u64,
    pub ticks_total: u64,
    /// Ticks skipped because the previous one overran the interval.
    pub ticks_skipped_total: u64,
    /// The last tick's duration (resolve, collect and judge every target), microseconds.
    pub tick_duration_us: u64,
    pub config: ConfigInfo,
    /// Export the top peers as metric labels (`peer_labels = true`).
    pub peer_labels: bool,
    pub targets: Vec<TargetStatus>,
    /// `[fleet]`: the restart slots this daemon shares with the other replicas, as the
    /// last tick gated on them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// Where the config came from and how reloads went.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConfigInfo {
    pub file: Option<String>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Why the last failed reload was refused (the old config kept running).
    pub last_reload_error: Option<String>,
}

/// One target as of the last tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetStatus {
    pub name: String,
    /// The selector, as written (`cmdline_regex "myapp --serve"`).
    pub selector: String,
    /// A process matches and was sampled this tick.
    pub found: bool,
    pub target: Option<TargetId>,
    /// Why no process is watched (no match, a pidfile that cannot be read, ...).
    pub missing_reason: Option<String>,
    /// When the current process was first seen (Unix ms).
    pub watching_since_unix_ms: Option<u64>,
    /// New processes seen for this target since leakwatch started (restarts, pid reuse).
    pub restarts_total: u64,
    /// The latest sample of the current process.
    pub sample: Option<Sample>,
    pub judged: Judged,
    /// Collector failures since start, by collector and reason.
    pub collector_errors_total: Vec<CollectorErrors>,
    /// How long this target's collection took in the last tick, seconds.
    pub poll_duration_seconds: Option<f64>,
    /// The actions on a flip: what is configured, the last firing, counts, errors.
    pub actions: ActionsStatus,
    /// `enforce`, or `observe`: a failing verdict answers 200 (`restraint: observe`).
    pub mode: Enforcement,
    /// Flips to unhealthy the judge found while the target was in observe mode: the times
    /// /healthz would have turned 503.
    pub would_fail_flips_total: u64,
}

impl TargetStatus {
    pub fn verdict(&self) -> &Verdict {
        &self.judged.verdict
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectorErrors {
    pub collector: Source,
    pub reason: UnknownKind,
    pub count: u64,
}

impl Snapshot {
    /// Whether the snapshot is older than [`STALE_AFTER_INTERVALS`] intervals at `now`.
    pub fn is_stale(&self, now_mono_ms: u64) -> bool {
        now_mono_ms.saturating_sub(self.published_mono_ms)
            > self.interval_ms.saturating_mul(STALE_AFTER_INTERVALS)
    }

    /// Every target found and sampled at least once (`/readyz`).
    pub fn ready(&self) -> bool {
        self.ticks_total > 0 && self.targets.iter().all(|t| t.found && t.sample.is_some())
    }

    pub fn target(&self, name: &str) -> Option<&TargetStatus> {
        self.targets.iter().find(|t| t.name == name)
    }
}
