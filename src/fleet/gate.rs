//! The fleet's place in the verdict pipeline: judge → **gate** → flip → actions → hold →
//! publish. A verdict the judge found unhealthy stays unhealthy only when this pod may
//! restart now (it holds a slot, or goes anyway); otherwise it answers 200, deferred, and
//! says who holds the slots and when it goes anyway. Before the flip, so the actions
//! (bundle, signal, exec) fire when the restart does, not while it waits. Pure.

use super::status::{FleetStatus, GoReason, Mode};
use crate::judge::{Restraint, Verdict};
use crate::units::duration_ms;

/// `found` as the fleet allows it at `now_unix_ms`; `status` is `None` without `[fleet]`.
pub fn gate(found: Verdict, status: Option<&FleetStatus>, now_unix_ms: u64) -> Verdict {
    match status {
        Some(s) if !found.healthy && !s.may_fail() => {
            let line = deferred_line(s, now_unix_ms);
            found.restrained(Restraint::Deferred, line)
        }
        _ => found,
    }
}

/// `deferred: ...`: why, who holds the slots and for how long, when this pod goes anyway.
pub fn deferred_line(s: &FleetStatus, now_unix_ms: u64) -> String {
    let mut line = match s.mode {
        Mode::LocalFallback => format!(
            "deferred: the Kubernetes API is unusable ({}): local fallback, staggered per pod",
            s.api.last_error.as_deref().unwrap_or("no answer yet")
        ),
        Mode::Coordinated if s.deferred.is_none() => {
            "deferred: asking for a restart slot of fleet group ".to_string() + &s.group
        }
        Mode::Coordinated => {
            let holders: Vec<String> = s
                .slots
                .iter()
                .filter_map(|v| {
                    let h = v.holder.as_ref()?;
                    Some(format!("{h} ({})", ago(v.renew_unix_ms, now_unix_ms)))
                })
                .collect();
            format!(
                "deferred: fleet group {} has {}/{} restart slots held{}",
                s.group,
                holders.len(),
                s.slots_total,
                if holders.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", holders.join(", "))
                }
            )
        }
    };
    if let Some(d) = &s.deferred {
        line += &format!("; waited {}", duration_ms(secs_ms(d.waited_s)));
        if let (Some(at), Some(why)) = (d.override_at_unix_ms, d.override_reason) {
            let left = at.saturating_sub(now_unix_ms);
            let why = match why {
                GoReason::FallbackStagger => "this pod's stagger",
                _ => "max_wait",
            };
            line += &format!(
                "; goes anyway in {} ({why})",
                duration_ms(left / 1000 * 1000)
            );
        }
        line += &format!(
            ", or when exhaustion is {} away",
            duration_ms(secs_ms(d.deadline_tte_s))
        );
    }
    line
}

/// How long ago a holder renewed, by its own clock (for people; never judged).
fn ago(renew_unix_ms: Option<i64>, now_unix_ms: u64) -> String {
    match renew_unix_ms {
        Some(r) if r > 0 => {
            let age = now_unix_ms.saturating_sub(r as u64);
            format!("renewed {} ago", duration_ms(age / 1000 * 1000))
        }
        _ => "not renewed".into(),
    }
}

fn secs_ms(s: f64) -> u64 {
    (s.max(0.0) * 1000.0) as u64 / 1000 * 1000
}
