//! The restart budget: restarts that followed an unhealthy verdict within the last hour.
//! When `restart_budget` of them have happened, leakwatch fails open instead of
//! crash-looping the service, and says so; the budget refills as restarts age out.

use serde::Serialize;

use crate::units;

const HOUR_MS: u64 = 3_600_000;

/// Restarts of one target, monotonic ms, and whether leakwatch's verdict caused each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestartLog {
    caused: Vec<u64>,
}

impl RestartLog {
    pub fn record(&mut self, now_mono_ms: u64, caused_by_verdict: bool) {
        if caused_by_verdict {
            self.caused.push(now_mono_ms);
        }
    }

    /// The budget at `now`; `limit` 0 means no budget (never fail open for it).
    pub fn budget(&mut self, now_mono_ms: u64, limit: u32) -> Budget {
        self.caused
            .retain(|t| now_mono_ms.saturating_sub(*t) < HOUR_MS && *t <= now_mono_ms);
        let used = self.caused.len() as u32;
        let exhausted = limit > 0 && used >= limit;
        let refills_in_ms = exhausted
            .then(|| self.caused.first().map(|t| HOUR_MS - (now_mono_ms - t)))
            .flatten();
        Budget {
            limit,
            caused_last_hour: used,
            exhausted,
            refills_in_ms,
        }
    }
}

/// The restart budget as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Budget {
    /// `restart_budget`; 0 means unlimited.
    pub limit: u32,
    /// Restarts within the last hour that followed an unhealthy verdict.
    pub caused_last_hour: u32,
    pub exhausted: bool,
    /// When exhausted: milliseconds until the oldest counted restart ages out.
    pub refills_in_ms: Option<u64>,
}

impl Budget {
    /// The note `/healthz` carries while failing open for the budget.
    pub fn note(&self) -> String {
        format!(
            "restart budget exhausted: {} restarts followed an unhealthy verdict in the last \
             hour (restart_budget = {}); failing open{}",
            self.caused_last_hour,
            self.limit,
            self.refills_in_ms
                .map(|ms| format!(" for ~{}", units::duration_ms(ms)))
                .unwrap_or_default()
        )
    }
}
