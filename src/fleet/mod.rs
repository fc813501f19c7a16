//! Fleet-safe restarts: the sidecars of N replicas share K restart *slots*, so a leak that
//! grows in lockstep on every replica never restarts them all at once.
//!
//! A slot is a `coordination.k8s.io/v1` Lease, `leakwatch-<group>-slot-<i>`. When the judge
//! finds a target unhealthy, the daemon asks for a slot ([`Demand`]); only a slot holder's
//! `/healthz` turns 503 (the [`gate`]), the others answer 200 and say `deferred`. A slot is
//! held through the kill and the restart, and given back once the new process has been
//! healthy for `healthy_for`. Expiry of a dead holder's slot is judged by *observed* change
//! on the local monotonic clock. Waiting is bounded: the replica goes anyway near
//! exhaustion or after `max_wait`. Any API trouble falls back to local behaviour with a
//! deterministic stagger per pod: leakwatch's own trouble never fails a probe.
//!
//! [`slots`] is the state machine, pure: every time comes from its caller, every API call
//! goes through [`api::LeaseApi`] (a fake in tests and in backtest, Kubernetes in
//! [`kube`]). [`task`] drives it on the daemon's runtime.

pub mod api;
pub mod gate;
#[cfg(feature = "fleet")]
pub mod kube;
pub mod slots;
pub mod status;
#[cfg(feature = "fleet")]
pub mod task;

/// Built without the `fleet` feature: the config refuses `[fleet]`, so no pipeline has a
/// [`Link`](task::Link); the type only keeps the pipeline's signature.
#[cfg(not(feature = "fleet"))]
pub mod task {
    use std::sync::Arc;

    use super::{Demand, FleetConfig, FleetStatus};

    #[derive(Debug)]
    pub struct Link;

    impl Link {
        pub fn ask(&self, _: Demand) -> Option<FleetStatus> {
            None
        }
    }

    #[derive(Debug)]
    pub struct Fleet {
        pub link: Arc<Link>,
    }

    impl Fleet {
        pub fn spawn(_: FleetConfig) -> Fleet {
            Fleet {
                link: Arc::new(Link),
            }
        }

        pub async fn stop(self) {}
    }
}

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use crate::judge::{Health, Judged, SeriesStatus};
use crate::sample::{Sample, TargetState};

pub use gate::gate;
pub use slots::{Demand, Now, Slots};
pub use status::{FleetStatus, GoReason, Mode};

/// Waiting for a slot ends when the judge's time to exhaustion is down to `restart_cost`
/// plus this margin: at exhaustion the kernel restarts the target anyway, uncoordinated.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// `[fleet]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// The replicas that share the slots: the Leases are `leakwatch-<group>-slot-<i>`.
    pub group: String,
    /// K: slots, so replicas in restart at once.
    pub max_concurrent: u32,
    /// The Leases' namespace; `None`: the pod's (in a cluster), else the kubeconfig
    /// context's.
    pub namespace: Option<String>,
    /// The holder identity; `None`: `$POD_NAME`, else the hostname.
    pub identity: Option<String>,
    /// A kubeconfig file; `None`: in-cluster, else `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Written into a Lease taken: a holder that stops renewing frees it after this long.
    pub lease_duration: Duration,
    /// How often a holder renews, and a waiting replica looks again (± 30 %).
    pub renew_every: Duration,
    /// The restarted target must be healthy this long before its slot is given back.
    pub healthy_for: Duration,
    /// A slot is given back after this long whatever the target does.
    pub max_hold: Duration,
    /// A replica that waited this long for a slot goes anyway.
    pub max_wait: Duration,
    /// What a restart costs (probe failures, grace, startup): waiting ends when the time
    /// to exhaustion is down to this plus [`DEADLINE_MARGIN`].
    pub restart_cost: Duration,
    /// In fallback (the API unusable) the stagger of a replica is a hash of its identity
    /// modulo this (and at most half the time to exhaustion).
    pub fallback_spread: Duration,
    /// One API request's timeout.
    pub api_timeout: Duration,
    /// While nothing is asked for, the slots are read this often (API health, /status).
    pub idle_check: Duration,
}

impl FleetConfig {
    /// A config with the defaults, for `group` and K.
    pub fn new(group: &str, max_concurrent: u32) -> FleetConfig {
        FleetConfig {
            group: group.to_string(),
            max_concurrent,
            namespace: None,
            identity: None,
            kubeconfig: None,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            healthy_for: Duration::from_secs(40),
            max_hold: Duration::from_secs(600),
            max_wait: Duration::from_secs(1200),
            restart_cost: Duration::from_secs(60),
            fallback_spread: Duration::from_secs(300),
            api_timeout: Duration::from_secs(5),
            idle_check: Duration::from_secs(60),
        }
    }

    /// The name of slot `i`'s Lease.
    pub fn lease_name(&self, i: u32) -> String {
        lease_name(&self.group, i)
    }
}

/// `leakwatch-<group>-slot-<i>`.
pub fn lease_name(group: &str, i: u32) -> String {
    format!("leakwatch-{group}-slot-{i}")
}

/// Why `group` cannot name Leases, if it cannot: a DNS-1123 label of at most 40
/// characters (the Lease names must be valid object names).
pub fn check_group(group: &str) -> Result<(), String> {
    let ok_chars = group
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if group.is_empty() || group.len() > 40 || !ok_chars {
        return Err(format!(
            "{group:?} is not a group name: 1 to 40 characters of a-z, 0-9 and '-' (it names \
             the Leases leakwatch-{group}-slot-N)"
        ));
    }
    if !ends(group.as_bytes().first()) || !ends(group.as_bytes().last()) {
        return Err(format!(
            "{group:?} is not a group name: it must start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// K from `max_concurrent`: an integer, or a percentage of `replicas` (rounded up, at least
/// 1).
pub fn slots_for(percent: f64, replicas: u32) -> u32 {
    let k = (f64::from(replicas) * percent / 100.0).ceil();
    (k as u32).max(1)
}

/// The identity a holder writes: `configured`, else `$POD_NAME`, else the hostname.
pub fn identity(configured: Option<&str>) -> String {
    if let Some(i) = configured.filter(|i| !i.is_empty()) {
        return i.to_string();
    }
    if let Ok(p) = std::env::var("POD_NAME") {
        if !p.trim().is_empty() {
            return p.trim().to_string();
        }
    }
    nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// FNV-1a of `s`: a stable hash (the same on every machine and release) for the slot order
/// and the fallback stagger.
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the targets need of the fleet: a restart is due when a judge found its target
/// unhealthy; settled when every target runs and is healthy; the least time to exhaustion
/// of a failing series (0 for one at its limit). The daemon asks with this every tick;
/// `backtest --fleet` builds each replica's demand with it too.
///
/// The time to exhaustion is the judge's where its trend is trusted, else the projection at
/// the window's slope before it is trusted (3 points are enough): it decides only when a
/// waiting replica goes anyway, so the doubt goes to restarting. A trusted trend takes the
/// judge's `min_span` (the whole window by default) after every restart, and a young
/// target waiting for a slot must still go before its limit.
pub fn demand_of<'a>(judged: impl Iterator<Item = (&'a Judged, Option<&'a Sample>)>) -> Demand {
    let mut d = Demand {
        settled: true,
        ..Demand::default()
    };
    for (j, sample) in judged {
        let health = j.health();
        let running = sample.is_some_and(|s| s.state == TargetState::Running);
        d.restart_due |= health == Health::Unhealthy;
        d.settled &= running && health == Health::Healthy;
        let failing = |s: &&SeriesStatus| j.rules.iter().any(|r| r.series == s.series && r.failing);
        for s in j.series.iter().filter(failing) {
            if let Some(t) = time_to_exhaustion(s) {
                d.tte_s = Some(d.tte_s.map_or(t, |o: f64| o.min(t)));
            }
        }
    }
    d
}

/// 0 at the limit; the judge's trusted projection; else the window's rising slope's.
fn time_to_exhaustion(s: &SeriesStatus) -> Option<f64> {
    let (value, limit) = (s.value?, s.limit?);
    if value >= limit {
        return Some(0.0);
    }
    let t = s.seconds_to_exhaustion.or_else(|| {
        let slope = s.trend.as_ref()?.slope_per_s;
        (slope > 0.0).then(|| (limit - value) / slope)
    })?;
    t.is_finite().then_some(t)
}
