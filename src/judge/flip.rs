//! The one flip detector: the health the judge found, tick after tick, for one target.
//!
//! The actions fire on a [`Transition`] to a worse [`Health`]; the log says when `/healthz`
//! starts or stops answering 503. Both edges are tracked here and nowhere else. Pure: the
//! caller says which process was judged and what the judge found.

use serde::Serialize;

use super::Verdict;
use crate::sample::TargetId;

/// What the judge found, before any hold: what the flip detector watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    #[default]
    Healthy,
    /// Rules failing, but the restart budget is exhausted: leakwatch fails open.
    WouldFail,
    /// The verdict is unhealthy: `/healthz` answers 503 unless a hold runs.
    Unhealthy,
}

/// This tick's health against the last one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The last health of the same process (`Healthy` for a new one).
    pub from: Health,
    pub to: Health,
    /// A new process is judged (the first one, a restart, a reused pid): what was learned
    /// about the last one (a grace running for it) no longer holds.
    pub new_process: bool,
}

impl Transition {
    /// The health got worse: the edge the actions fire on.
    pub fn is_flip(&self) -> bool {
        self.to > self.from
    }
}

/// How `/healthz` changed its answer this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 before, 503 now.
    NowFailing,
    /// 503 before, 200 now.
    HealthyAgain,
}

/// The last health and the last answer of one target.
#[derive(Debug, Clone, Default)]
pub struct FlipDetector {
    /// The process the health belongs to.
    judging: Option<TargetId>,
    health: Health,
    /// `/healthz` answered 503 at the last publication.
    failing: bool,
}

impl FlipDetector {
    pub fn new() -> FlipDetector {
        FlipDetector::default()
    }

    /// Take this tick's health. `running` is the process sampled running this tick (`None`
    /// when none was: the last one's health carries over).
    pub fn found(&mut self, running: Option<TargetId>, health: Health) -> Transition {
        let new_process = running.is_some_and(|id| self.judging != Some(id));
        if new_process {
            self.judging = running;
            self.health = Health::Healthy;
        }
        let from = self.health;
        self.health = health;
        Transition {
            from,
            to: health,
            new_process,
        }
    }

    /// Forget the last health of the process judged, as if it had been healthy: the next
    /// unhealthy tick is a flip again. A target switched from observe to enforce mode while
    /// failing fires its actions (all of them now) at that next tick.
    pub fn rearm(&mut self) {
        self.health = Health::Healthy;
    }

    /// Take the verdict `/healthz` answers this tick (after any hold).
    pub fn answered(&mut self, published: &Verdict) -> Option<Answer> {
        let failing = !published.healthy;
        let change = match (self.failing, failing) {
            (false, true) => Some(Answer::NowFailing),
            (true, false) => Some(Answer::HealthyAgain),
            _ => None,
        };
        self.failing = failing;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(pid: i32, starttime_ticks: u64) -> Option<TargetId> {
        Some(TargetId {
            pid,
            starttime_ticks,
        })
    }

    #[test]
    fn a_flip_is_an_edge_to_worse_health_only() {
        let mut d = FlipDetector::new();
        let t = d.found(id(1, 10), Health::Healthy);
        assert!(t.new_process && !t.is_flip());
        assert!(d.found(id(1, 10), Health::WouldFail).is_flip());
        assert!(d.found(id(1, 10), Health::Unhealthy).is_flip());
        // Staying unhealthy, or getting better, is no flip.
        assert!(!d.found(id(1, 10), Health::Unhealthy).is_flip());
        assert!(!d.found(id(1, 10), Health::WouldFail).is_flip());
        assert!(!d.found(None, Health::Healthy).is_flip());
        assert!(d.found(None, Health::Unhealthy).is_flip());
    }

    #[test]
    fn a_new_process_starts_from_healthy() {
        let mut d = FlipDetector::new();
        d.found(id(1, 10), Health::Unhealthy);
        // The same pid, a new start time: a new process, unhealthy from the start.
        let t = d.found(id(1, 20), Health::Unhealthy);
        assert!(t.new_process);
        assert_eq!(t.from, Health::Healthy);
        assert!(t.is_flip());
        // No process this tick: not a new one.
        assert!(!d.found(None, Health::Unhealthy).new_process);
    }

    #[test]
    fn rearmed_the_next_unhealthy_tick_is_a_flip_again() {
        let mut d = FlipDetector::new();
        assert!(d.found(id(1, 10), Health::Unhealthy).is_flip());
        assert!(!d.found(id(1, 10), Health::Unhealthy).is_flip());
        d.rearm();
        let t = d.found(id(1, 10), Health::Unhealthy);
        assert!(t.is_flip() && !t.new_process, "{t:?}");
        assert!(!d.found(id(1, 10), Health::Unhealthy).is_flip());
    }

    #[test]
    fn the_answer_changes_on_the_published_verdict() {
        let mut d = FlipDetector::new();
        let ok = Verdict::healthy(Vec::new());
        let failing = Verdict {
            healthy: false,
            ..Verdict::default()
        };
        assert_eq!(d.answered(&ok), None);
        assert_eq!(d.answered(&failing), Some(Answer::NowFailing));
        assert_eq!(d.answered(&failing), None);
        assert_eq!(d.answered(&ok), Some(Answer::HealthyAgain));
    }
}
