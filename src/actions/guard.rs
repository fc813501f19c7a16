//! The guards around a firing (pure; the caller passes the monotonic time): nothing while
//! the restart budget is exhausted or the previous firing is still running, at most one
//! firing per `cooldown`, at most `max_per_hour` within any hour.

use std::collections::VecDeque;
use std::time::Duration;

use crate::units;

const HOUR_MS: u64 = 3_600_000;

/// When one target's actions last fired.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Guard {
    /// Monotonic ms of the firings within the last hour, oldest first.
    fired: VecDeque<u64>,
}

/// Whether to fire now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Fire,
    /// Why not.
    Skip(String),
}

impl Guard {
    /// Decide at `now_ms`; a [`Decision::Fire`] is recorded as a firing.
    pub fn decide(
        &mut self,
        now_ms: u64,
        cooldown: Duration,
        max_per_hour: u32,
        budget_exhausted: bool,
        busy: bool,
    ) -> Decision {
        self.fired.retain(|t| *t <= now_ms && now_ms - t < HOUR_MS);
        if budget_exhausted {
            return Decision::Skip(
                "the restart budget is exhausted: leakwatch fails open and sends nothing".into(),
            );
        }
        if busy {
            return Decision::Skip("the previous actions are still running".into());
        }
        let cooldown_ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
        if let Some(last) = self.fired.back() {
            let since = now_ms - last;
            if since < cooldown_ms {
                return Decision::Skip(format!(
                    "cooldown: the last actions fired {} ago (cooldown {})",
                    units::duration_ms(since),
                    units::duration_ms(cooldown_ms)
                ));
            }
        }
        if self.fired.len() >= max_per_hour as usize {
            return Decision::Skip(format!(
                "hourly cap: {} firings in the last hour (max_per_hour = {max_per_hour})",
                self.fired.len()
            ));
        }
        self.fired.push_back(now_ms);
        Decision::Fire
    }

    /// Firings within the hour before `now_ms`.
    pub fn last_hour(&self, now_ms: u64) -> usize {
        self.fired
            .iter()
            .filter(|t| **t <= now_ms && now_ms - **t < HOUR_MS)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;
    const T0: u64 = 10_000_000;

    fn fire(g: &mut Guard, at: u64, cooldown_min: u64, cap: u32) -> Decision {
        g.decide(
            at,
            Duration::from_secs(cooldown_min * 60),
            cap,
            false,
            false,
        )
    }

    #[test]
    fn cooldown_holds_between_firings() {
        let mut g = Guard::default();
        assert_eq!(fire(&mut g, T0, 10, 3), Decision::Fire);
        let Decision::Skip(why) = fire(&mut g, T0 + 9 * MIN, 10, 3) else {
            panic!("fired within the cooldown");
        };
        assert!(why.starts_with("cooldown"), "{why}");
        assert_eq!(fire(&mut g, T0 + 10 * MIN, 10, 3), Decision::Fire);
    }

    #[test]
    fn the_hourly_cap_holds_and_refills_as_firings_age_out() {
        let mut g = Guard::default();
        // A flip every 5 minutes, cooldown 1 minute, cap 3.
        let flips: Vec<Decision> = (0..8)
            .map(|i| fire(&mut g, T0 + i * 5 * MIN, 1, 3))
            .collect();
        let fired = flips.iter().filter(|d| **d == Decision::Fire).count();
        assert_eq!(fired, 3, "{flips:?}");
        assert!(matches!(&flips[3], Decision::Skip(w) if w.starts_with("hourly cap")));
        assert_eq!(g.last_hour(T0 + 35 * MIN), 3);
        // The first firing ages out an hour later.
        assert_eq!(fire(&mut g, T0 + 60 * MIN, 1, 3), Decision::Fire);
        assert!(matches!(
            fire(&mut g, T0 + 62 * MIN, 1, 3),
            Decision::Skip(_)
        ));
        assert_eq!(fire(&mut g, T0 + 65 * MIN, 1, 3), Decision::Fire);
    }

    #[test]
    fn nothing_while_the_budget_is_exhausted_or_the_last_firing_runs() {
        let mut g = Guard::default();
        let d = g.decide(T0, Duration::ZERO, 3, true, false);
        assert!(matches!(d, Decision::Skip(w) if w.contains("restart budget")));
        let d = g.decide(T0, Duration::ZERO, 3, false, true);
        assert!(matches!(d, Decision::Skip(w) if w.contains("still running")));
        assert_eq!(g.last_hour(T0), 0, "a skip is not a firing");
        assert_eq!(
            g.decide(T0, Duration::ZERO, 3, false, false),
            Decision::Fire
        );
    }
}
