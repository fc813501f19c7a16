//! Observe mode: a target judged, logged, exported and shown as always, whose `/healthz`
//! never fails. `mode = "observe"` (top level or per target) is how leakwatch is adopted:
//! it says what it would have done (`observe: would fail: ...`, `leakwatch_would_fail`)
//! before it may restart anything. Pure, like the rest of the judge.

use serde::{Deserialize, Serialize};

use super::{Restraint, Verdict};

/// Whether a target's failing verdict may fail `/healthz` (not [`crate::fleet::Mode`],
/// which says how the fleet's restart slots are reached).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// A failing verdict answers 503 (unless the fleet defers it or a grace holds it).
    #[default]
    Enforce,
    /// A failing verdict answers 200, each failing line kept as `observe: would fail: ...`;
    /// only the actions listed in `[actions] observe` run on its flip.
    Observe,
}

impl Enforcement {
    pub const ALL: [Enforcement; 2] = [Enforcement::Enforce, Enforcement::Observe];

    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::Observe => "observe",
        }
    }

    pub fn is_observe(self) -> bool {
        self == Enforcement::Observe
    }
}

impl std::fmt::Display for Enforcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The prefix of each failing line an observe target keeps in its notes.
pub const WOULD_FAIL: &str = "observe: would fail: ";

impl Verdict {
    /// This verdict as an observe target answers it: an unhealthy one turned healthy with
    /// `restraint: observe`, each failing line first among the notes as
    /// `observe: would fail: ...`, the judge's notes and warnings kept. A healthy verdict
    /// is returned as it is.
    pub fn observed(self) -> Verdict {
        if self.healthy {
            return self;
        }
        self.held_back(Restraint::Observe, None, WOULD_FAIL)
    }

    /// Observe mode holds this verdict at 200 (`leakwatch_would_fail`).
    pub fn would_fail(&self) -> bool {
        self.restraint == Some(Restraint::Observe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing() -> Verdict {
        Verdict {
            healthy: false,
            failing: vec![
                "fds: 240/256 open (93.8% >= 90%)".into(),
                "threads: 900/1000".into(),
            ],
            notes: vec!["heap: unknown (smaps unreadable); not judged".into()],
            warnings: vec!["rss: leak suspected: +1 MiB/s".into()],
            restraint: None,
        }
    }

    #[test]
    fn an_unhealthy_verdict_observed_answers_200_with_each_line() {
        let v = failing().observed();
        assert!(v.healthy);
        assert!(v.failing.is_empty());
        assert_eq!(v.restraint, Some(Restraint::Observe));
        assert!(v.would_fail());
        assert_eq!(
            v.notes,
            [
                "observe: would fail: fds: 240/256 open (93.8% >= 90%)",
                "observe: would fail: threads: 900/1000",
                "heap: unknown (smaps unreadable); not judged",
            ]
        );
        assert_eq!(v.warnings, ["rss: leak suspected: +1 MiB/s"]);
    }

    #[test]
    fn a_healthy_verdict_observed_is_unchanged() {
        let ok = Verdict::healthy(vec!["note".into()]);
        assert_eq!(ok.clone().observed(), ok);
        assert!(!ok.would_fail());
        // Held back by something else: not observe's to count.
        let deferred = failing().restrained(Restraint::Deferred, "deferred: ...".into());
        assert!(!deferred.clone().observed().would_fail());
        assert_eq!(deferred.clone().observed(), deferred);
    }

    #[test]
    fn the_mode_reads_and_writes_as_its_word() {
        #[derive(Deserialize)]
        struct M {
            mode: Enforcement,
        }
        let m: M = toml::from_str("mode = \"observe\"").unwrap();
        assert_eq!(m.mode, Enforcement::Observe);
        assert!(toml::from_str::<M>("mode = \"dry-run\"").is_err());
        assert_eq!(
            serde_json::to_string(&Enforcement::Enforce).unwrap(),
            "\"enforce\""
        );
        assert_eq!(Enforcement::default(), Enforcement::Enforce);
        let words: Vec<&str> = Enforcement::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(words, ["enforce", "observe"]);
    }
}
