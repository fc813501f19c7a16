//! The leads as a kubelet sees them. A kubelet restarts a target only after
//! `failureThreshold` failed probes in a row: a 503 that a 200 cuts short restarts nothing.
//! So each restart and exhaustion is met with the run of 503 that lasted until it (its
//! lead counts from that run's start, the flip a kubelet acts on) and with the runs before
//! it in the same process that a 200 cut short (the verdict flapped). A suspicion of a
//! leak is followed to the exhaustion of its series, else the restart of its process.
//!
//! Pure: the flips (with when each run of 503 ended), restarts and exhaustions of one
//! replay in, the [`Event`]s out.

use super::{Event, Exhaustion, Flip, LeadTo, Suspicion};

/// Each restart and exhaustion, in time order (a restart first at the same time: an
/// exhaustion there belongs to the new process), with the runs of 503 before it.
pub fn events(flips: &[Flip], restarts: &[u64], exhaustions: &[Exhaustion]) -> Vec<Event> {
    let mut out: Vec<Event> = restarts
        .iter()
        .map(|&at| event(flips, restarts, at, LeadTo::Restart))
        .chain(
            exhaustions
                .iter()
                .map(|e| event(flips, restarts, e.at_ms, LeadTo::Exhaustion(e.series))),
        )
        .collect();
    out.sort_by_key(|e| (e.at_ms, !matches!(e.what, LeadTo::Restart)));
    out
}

/// One event and the runs of 503 of its process before it. A restart at `at` ends the
/// process judged until the tick before: a run lasted until it when it ended at `at` (the
/// new process answers 200) or later. An exhaustion at `at` is judged on that tick: a run
/// lasted until it when it was still 503 there.
fn event(flips: &[Flip], restarts: &[u64], at: u64, what: LeadTo) -> Event {
    let restart = what == LeadTo::Restart;
    let born = restarts
        .iter()
        .copied()
        .filter(|&r| if restart { r < at } else { r <= at })
        .max()
        .unwrap_or(0);
    let before = |f: &&Flip| f.at_ms >= born && if restart { f.at_ms < at } else { f.at_ms <= at };
    let runs: Vec<&Flip> = flips.iter().filter(before).collect();
    let lasted = |f: &&&Flip| match f.until_ms {
        None => true,
        Some(u) if restart => u >= at,
        Some(u) => u > at,
    };
    Event {
        at_ms: at,
        what,
        runs: runs.len(),
        unbroken_from_ms: runs.last().filter(lasted).map(|f| f.at_ms),
        first_flip_ms: runs.first().map(|f| f.at_ms),
    }
}

/// What followed a suspicion in its process: its series at its limit, else the restart
/// that ended the process; `None` when the history ends first.
pub fn follow(
    s: &Suspicion,
    restarts: &[u64],
    exhaustions: &[Exhaustion],
) -> Option<(u64, LeadTo)> {
    let restart = restarts.iter().copied().find(|&r| r > s.at_ms);
    exhaustions
        .iter()
        .find(|e| e.series == s.series && e.at_ms >= s.at_ms && restart.is_none_or(|r| e.at_ms < r))
        .map(|e| (e.at_ms, LeadTo::Exhaustion(e.series)))
        .or(restart.map(|r| (r, LeadTo::Restart)))
}
