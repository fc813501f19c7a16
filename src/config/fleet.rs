//! `[fleet]` validated into a [`FleetConfig`]: a group that can name Leases, K from a count
//! or a percentage of `replicas`, and timings a holder can keep (a lease outlives a missed
//! renewal).

use std::time::Duration;

use super::raw::{RawFleet, RawSlots};
use crate::fleet::{check_group, slots_for, FleetConfig};

/// The most slots a group may have: each is an object the waiting replicas read.
const MAX_SLOTS: i64 = 100;

/// `Err((key, message))` names the key under `fleet.`.
pub fn validate(raw: RawFleet) -> Result<FleetConfig, (String, String)> {
    let err = |k: &str, m: String| (k.to_string(), m);
    if !cfg!(feature = "fleet") {
        return Err(err(
            "group",
            "this leakwatch was built without the `fleet` feature (cargo build --features fleet)"
                .into(),
        ));
    }
    let group = raw.group.ok_or_else(|| {
        err(
            "group",
            "missing: the replicas sharing restart slots (e.g. the Deployment's name)".into(),
        )
    })?;
    check_group(&group).map_err(|m| err("group", m))?;
    let k =
        slots(raw.max_concurrent.as_ref(), raw.replicas).map_err(|m| err("max_concurrent", m))?;
    let mut f = FleetConfig::new(&group, k);
    f.namespace = raw.namespace.filter(|n| !n.is_empty());
    f.identity = raw.identity.filter(|i| !i.is_empty());
    f.kubeconfig = raw.kubeconfig;
    let set = |v: Option<super::values::HumanDuration>, d: &mut Duration| {
        if let Some(v) = v {
            *d = v.0;
        }
    };
    set(raw.lease_duration, &mut f.lease_duration);
    set(raw.renew_every, &mut f.renew_every);
    set(raw.healthy_for, &mut f.healthy_for);
    set(raw.max_hold, &mut f.max_hold);
    set(raw.max_wait, &mut f.max_wait);
    set(raw.restart_cost, &mut f.restart_cost);
    set(raw.fallback_spread, &mut f.fallback_spread);
    set(raw.api_timeout, &mut f.api_timeout);
    timings(&f).map_err(|(k, m)| err(k, m))?;
    Ok(f)
}

fn slots(raw: Option<&RawSlots>, replicas: Option<u32>) -> Result<u32, String> {
    match raw {
        None => Ok(1),
        Some(RawSlots::Count(n)) if (1..=MAX_SLOTS).contains(n) => Ok(*n as u32),
        Some(RawSlots::Count(n)) => Err(format!("{n}: must be 1 to {MAX_SLOTS}")),
        Some(RawSlots::Text(t)) => {
            let pct = t
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
                .filter(|p| *p > 0.0 && *p <= 100.0)
                .ok_or_else(|| format!("{t:?}: a count (2) or a percentage (\"25%\", 0-100%)"))?;
            let n = replicas.filter(|n| *n > 0).ok_or_else(|| {
                format!("{t:?} is a percentage: set `replicas`, the group's size, too")
            })?;
            Ok(slots_for(pct, n).min(MAX_SLOTS as u32))
        }
    }
}

fn timings(f: &FleetConfig) -> Result<(), (&'static str, String)> {
    let s = |d: Duration| humantime::format_duration(d).to_string();
    if f.renew_every < Duration::from_millis(100) {
        return Err(("renew_every", "must be at least 100ms".into()));
    }
    if f.lease_duration < f.renew_every * 2 {
        return Err((
            "lease_duration",
            format!(
                "must be at least twice renew_every ({}): a holder that misses one renewal \
                 must keep its slot",
                s(f.renew_every)
            ),
        ));
    }
    if f.lease_duration > Duration::from_secs(3600) {
        return Err(("lease_duration", "must be at most 1h".into()));
    }
    if f.api_timeout < Duration::from_millis(100) || f.api_timeout > f.lease_duration {
        return Err((
            "api_timeout",
            format!("must be 100ms to lease_duration ({})", s(f.lease_duration)),
        ));
    }
    if f.max_hold <= f.healthy_for {
        return Err((
            "max_hold",
            format!(
                "must be longer than healthy_for ({}): a slot is given back once the restarted \
                 target is healthy that long",
                s(f.healthy_for)
            ),
        ));
    }
    if f.fallback_spread < Duration::from_secs(1) {
        return Err(("fallback_spread", "must be at least 1s".into()));
    }
    Ok(())
}
