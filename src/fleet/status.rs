//! What the fleet coordination publishes: `/status`'s `fleet`, the `leakwatch_fleet_*`
//! metrics, and the [`gate`](super::gate)'s decision.

use std::collections::BTreeMap;

use serde::Serialize;

/// How the slots are decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Through the Leases.
    #[default]
    Coordinated,
    /// The API is unusable: local behaviour, with this pod's stagger.
    LocalFallback,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Coordinated => "coordinated",
            Mode::LocalFallback => "local_fallback",
        }
    }
}

/// Why a replica may fail its probe now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GoReason {
    /// It holds a slot (or held one since the restart became due: the decision is kept).
    Slot,
    /// The time to exhaustion is down to the restart's cost plus a margin.
    Deadline,
    /// It waited `max_wait`.
    MaxWait,
    /// The API is unusable and this pod's stagger has passed.
    FallbackStagger,
}

impl GoReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GoReason::Slot => "slot",
            GoReason::Deadline => "deadline",
            GoReason::MaxWait => "max_wait",
            GoReason::FallbackStagger => "fallback_stagger",
        }
    }
}

/// One slot as last read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotView {
    pub lease: String,
    /// Its holder (sanitized, at most 63 characters), `None` when free.
    pub holder: Option<String>,
    /// The holder's renewTime, Unix ms, as it wrote it (its clock, not ours).
    pub renew_unix_ms: Option<i64>,
    /// How long the record has been seen unchanged on this pod's clock, seconds: a holder
    /// that stopped renewing loses the slot when this reaches the Lease's duration.
    pub unchanged_s: f64,
    /// The Lease's duration, seconds (bounded to 1..=3600).
    pub duration_s: u64,
}

/// The slot this pod holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldView {
    pub lease: String,
    pub since_unix_ms: u64,
    pub held_s: f64,
}

/// This pod waits for a slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deferred {
    pub since_unix_ms: u64,
    pub waited_s: f64,
    /// When it goes anyway at the latest (`max_wait`, or the fallback stagger), Unix ms.
    pub override_at_unix_ms: Option<u64>,
    pub override_reason: Option<GoReason>,
    /// Going anyway when the time to exhaustion is down to this, seconds.
    pub deadline_tte_s: f64,
}

/// A latency histogram of the API requests (cumulative counts per upper bound).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub buckets: Vec<(f64, u64)>,
    pub sum_s: f64,
    pub count: u64,
}

/// Upper bounds of [`Latency`], seconds.
pub const LATENCY_BOUNDS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

impl Latency {
    pub fn observe(&mut self, seconds: f64) {
        if self.buckets.is_empty() {
            self.buckets = LATENCY_BOUNDS.iter().map(|b| (*b, 0)).collect();
        }
        for (le, n) in &mut self.buckets {
            if seconds <= *le {
                *n += 1;
            }
        }
        self.sum_s += seconds;
        self.count += 1;
    }
}

/// The API as this pod sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApiView {
    /// The last request succeeded (a 409 is a success: the API answered).
    pub up: bool,
    pub last_error: Option<String>,
    pub last_ok_unix_ms: Option<u64>,
    pub requests_total: u64,
    /// Failed requests by kind (`unreachable`, `forbidden`, `not_found`, ...).
    pub errors_total: BTreeMap<String, u64>,
    pub latency: Latency,
}

/// The fleet coordination of this daemon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetStatus {
    pub group: String,
    pub namespace: String,
    pub identity: String,
    pub mode: Mode,
    pub slots_total: u32,
    pub slots: Vec<SlotView>,
    pub held: Option<HeldView>,
    /// Set while a restart is due and this pod may fail its probe.
    pub go: Option<GoReason>,
    pub deferred: Option<Deferred>,
    pub api: ApiView,
    /// Attempts to take a slot, by result: `acquired`, `busy`, `conflict`, `error`.
    pub acquire_total: BTreeMap<String, u64>,
    /// Restarts allowed without a slot, by reason.
    pub override_total: BTreeMap<String, u64>,
    /// Slots given back, by reason: `healthy`, `max_hold`, `shutdown`, `lost`.
    pub release_total: BTreeMap<String, u64>,
}

impl FleetStatus {
    /// This pod may fail its probe: it holds a slot, or goes anyway.
    pub fn may_fail(&self) -> bool {
        self.go.is_some()
    }

    /// Slots seen held by anyone (this pod included).
    pub fn slots_held_observed(&self) -> usize {
        self.slots.iter().filter(|s| s.holder.is_some()).count()
    }
}
