//! `backtest --fleet K`, for sizing: the matched targets are the N replicas of one fleet
//! sharing K restart slots. Each is judged on its own history as [`replay`](super::replay)
//! judges it; then all N are stepped in lockstep on one virtual clock, every second as the
//! daemon's fleet task steps them, each tick with the [`Demand`] the daemon would ask with
//! ([`demand_of`], from the judge's last tick) and through the daemon's own slot state
//! machine ([`Slots`]) against one in-memory API ([`MemoryLeases`]). A replica whose judge
//! finds it unhealthy but that may not fail yet is *deferred*.
//!
//! A history cannot show what a restart under coordination would have done, so the restart
//! is simulated, and said to be: a replica that may fail is restarted by a simulated kubelet
//! `restart_cost` after its go (the "go"), and is healthy from then on (its old process,
//! still in the history, is no longer judged) until its history shows a new process, which
//! is judged as recorded. Its slot is given back once it has been healthy for
//! `healthy_for`, as the daemon gives it back. An exhaustion the data shows before the go is
//! an exhaustion *while deferred*: the fleet was sized too small for that leak.
//!
//! Pure: no I/O and no clock.

pub mod render;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::FutureExt;

use super::render::labels_text;
use super::replay::{note_exhaustions, walk};
use super::{Setup, TargetHistory};
use crate::fleet::api::MemoryLeases;
use crate::fleet::{demand_of, Demand, FleetConfig, GoReason, Now, Slots};
use crate::judge::Series;

/// How the fleet is simulated.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSetup {
    /// The group, K (`--fleet`) and the timings of the config's `[fleet]`, else the
    /// defaults: who goes when, and when a slot is given back.
    pub cfg: FleetConfig,
    /// From a replica's go to its new process running and healthy: the simulated kubelet's
    /// failed probes, the kill, the grace and the startup (`--fleet-restart-cost`).
    pub restart_cost: Duration,
    /// The fleet's tick: the slots are stepped and the gate decided this often. At most
    /// [`MAX_TICK`]: a holder renews only when stepped, and the others take a Lease
    /// unchanged for `lease_duration` as their own.
    pub tick: Duration,
}

/// The fleet task's cadence in the daemon.
pub const MAX_TICK: Duration = Duration::from_secs(1);

/// The simulated kubelet's default: `failureThreshold` 3 × `periodSeconds` 10.
pub const DEFAULT_RESTART_COST: Duration = Duration::from_secs(30);

impl FleetSetup {
    /// `T_r`: how long one restart keeps a slot, the restart and then `healthy_for`.
    pub fn restart_to_healthy(&self) -> Duration {
        self.restart_cost + self.cfg.healthy_for
    }
}

/// When a replica might fail its probe, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Go {
    pub at_ms: u64,
    pub reason: GoReason,
    /// The judge's least time to exhaustion of the failing series then, seconds.
    pub tte_s: Option<f64>,
    /// When the simulated restart is done: `restart_cost` after the go.
    pub restart_ms: u64,
}

/// How a restart that came due ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It went, and the simulated kubelet restarted it.
    Restarted,
    /// Its judge found it healthy again while it waited: no restart was needed.
    Cleared,
    /// Its history shows a new process while it waited (a crash at the limit, or a restart
    /// nobody coordinated): the data shows nothing more of the old process.
    HistoryRestart,
    /// Its history ends while it waits.
    HistoryEnd,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Restarted => "restarted",
            Outcome::Cleared => "cleared",
            Outcome::HistoryRestart => "history_restart",
            Outcome::HistoryEnd => "history_end",
        }
    }
}

/// What a lead counts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadTo {
    /// The series at its limit, as the data shows.
    Exhaustion(Series),
    /// No exhaustion in the data: the judge's projected time to exhaustion then.
    Projected,
    /// Neither: the end of the process in the history; the lead is at least this.
    ProcessEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lead {
    pub ms: u64,
    pub to: LeadTo,
}

/// A restart that came due: from the first tick the judge found the replica unhealthy.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub due_ms: u64,
    /// The judge's least time to exhaustion of the failing series then, seconds.
    pub tte_at_due_s: Option<f64>,
    pub go: Option<Go>,
    pub outcome: Outcome,
    /// When the wait ended: the go, or when the outcome came.
    pub waited_until_ms: u64,
    /// The first exhaustion the data shows in this process.
    pub exhaustion: Option<(u64, Series)>,
    /// When this process ends in the data: the next new process, else the last tick.
    pub process_end_ms: u64,
}

impl Episode {
    pub fn deferred_ms(&self) -> u64 {
        self.waited_until_ms.saturating_sub(self.due_ms)
    }

    /// The data shows the limit reached after the restart came due and before its go.
    pub fn exhausted_while_deferred(&self) -> bool {
        self.exhaustion.is_some_and(|(at, _)| {
            at >= self.due_ms
                && match self.go {
                    Some(g) => at < g.at_ms,
                    None => at <= self.waited_until_ms,
                }
        })
    }

    /// The data shows the limit reached after the go, before the simulated restart was done.
    pub fn exhausted_before_restart(&self) -> bool {
        match (self.exhaustion, self.go) {
            (Some((at, _)), Some(g)) => at >= g.at_ms && at < g.restart_ms,
            _ => false,
        }
    }

    /// The lead the judge gave, uncoordinated: from due to the exhaustion, else its
    /// projection then.
    pub fn lead_given(&self) -> Option<Lead> {
        lead(self.due_ms, self.exhaustion, self.tte_at_due_s, None)
    }

    /// The lead kept: from the go to the exhaustion, else the judge's projection at the go,
    /// else at least to the end of the process in the data.
    pub fn lead_kept(&self) -> Option<Lead> {
        let g = self.go?;
        lead(g.at_ms, self.exhaustion, g.tte_s, Some(self.process_end_ms))
    }
}

fn lead(
    from_ms: u64,
    exhaustion: Option<(u64, Series)>,
    tte_s: Option<f64>,
    end_ms: Option<u64>,
) -> Option<Lead> {
    if let Some((at, series)) = exhaustion {
        return Some(Lead {
            ms: at.saturating_sub(from_ms),
            to: LeadTo::Exhaustion(series),
        });
    }
    if let Some(t) = tte_s.filter(|t| t.is_finite() && *t >= 0.0) {
        return Some(Lead {
            ms: (t * 1000.0) as u64,
            to: LeadTo::Projected,
        });
    }
    end_ms.map(|e| Lead {
        ms: e.saturating_sub(from_ms),
        to: LeadTo::ProcessEnd,
    })
}

/// One replica in the fleet's replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaReport {
    pub labels: BTreeMap<String, String>,
    pub episodes: Vec<Episode>,
}

impl ReplicaReport {
    pub fn restarts(&self) -> usize {
        self.episodes
            .iter()
            .filter(|e| e.outcome == Outcome::Restarted)
            .count()
    }

    pub fn deferred_ms(&self) -> u64 {
        self.episodes.iter().map(Episode::deferred_ms).sum()
    }

    pub fn longest_wait_ms(&self) -> u64 {
        self.episodes
            .iter()
            .map(Episode::deferred_ms)
            .max()
            .unwrap_or(0)
    }

    /// Goes without a slot, by reason.
    pub fn overrides(&self) -> BTreeMap<GoReason, usize> {
        let mut out = BTreeMap::new();
        for g in self.episodes.iter().filter_map(|e| e.go) {
            if g.reason != GoReason::Slot {
                *out.entry(g.reason).or_default() += 1;
            }
        }
        out
    }

    pub fn exhausted_while_deferred(&self) -> bool {
        self.episodes.iter().any(Episode::exhausted_while_deferred)
    }
}

/// Restarts that overlap in time (each from its due to its simulated restart): one drain
/// of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub first_go_ms: u64,
    pub last_restart_ms: u64,
    /// The replicas restarted in it.
    pub replicas: usize,
}

impl Round {
    pub fn drain_ms(&self) -> u64 {
        self.last_restart_ms.saturating_sub(self.first_go_ms)
    }
}

/// The fleet's replay.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetReport {
    pub setup: FleetSetup,
    pub replicas: Vec<ReplicaReport>,
    /// Ticks stepped.
    pub ticks: usize,
    /// The most replicas restarting at once (gone and not yet restarted), and when first.
    pub worst_concurrent: usize,
    pub worst_at_ms: Option<u64>,
    /// The most slot Leases held at once.
    pub most_slots_held: usize,
    pub rounds: Vec<Round>,
}

/// Whether the fleet drains within the judge's lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// `ceil(N/K) × T_r` fits in the smallest lead.
    Fits,
    /// It does not; the smallest K with which it does.
    TooSlow { k_needed: u64 },
    /// The lead is shorter than one `T_r`: no K fits.
    NoK,
    /// No lead to compare with (nothing came due, or no exhaustion and no projection).
    Unknown,
}

/// The sizing rule: a lockstep fleet drains in about `ceil(N/K)` restart-to-healthy times,
/// which must fit in the lead the judge gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    pub n: u64,
    pub k: u64,
    pub waves: u64,
    pub restart_to_healthy_ms: u64,
    pub needed_ms: u64,
    /// The smallest lead the judge gave, and whose (the replica's index).
    pub lead: Option<(Lead, usize)>,
    pub fit: Fit,
}

impl FleetReport {
    /// The longest drain (the first of the longest).
    pub fn drain(&self) -> Option<Round> {
        self.rounds
            .iter()
            .copied()
            .fold(None, |best: Option<Round>, r| match best {
                Some(b) if b.drain_ms() >= r.drain_ms() => Some(b),
                _ => Some(r),
            })
    }

    pub fn sizing(&self) -> Sizing {
        let n = self.replicas.len() as u64;
        let k = u64::from(self.setup.cfg.max_concurrent.max(1));
        let t_r = ms(self.setup.restart_to_healthy()).max(1);
        let waves = n.div_ceil(k);
        let lead = self
            .replicas
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.episodes.iter().map(move |e| (e, i)))
            .filter(|(e, _)| e.outcome != Outcome::Cleared)
            .filter_map(|(e, i)| e.lead_given().map(|l| (l, i)))
            .min_by_key(|(l, _)| l.ms);
        let fit = match lead {
            None => Fit::Unknown,
            Some((l, _)) if waves * t_r <= l.ms => Fit::Fits,
            Some((l, _)) if l.ms < t_r => Fit::NoK,
            Some((l, _)) => Fit::TooSlow {
                k_needed: n.div_ceil(l.ms / t_r),
            },
        };
        Sizing {
            n,
            k,
            waves,
            restart_to_healthy_ms: t_r,
            needed_ms: waves * t_r,
            lead,
            fit,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One judged tick of a replica, as the fleet needs it.
struct Point {
    t: u64,
    demand: Demand,
    restarted: bool,
}

/// A replica's history, judged.
struct Track {
    labels: BTreeMap<String, String>,
    points: Vec<Point>,
    exhaustions: Vec<(u64, Series)>,
    restarts: Vec<u64>,
}

impl Track {
    fn of(history: &TargetHistory, setup: &Setup) -> Track {
        let (mut points, mut restarts) = (Vec::new(), Vec::new());
        let (mut seen, mut found) = (Vec::new(), Vec::new());
        walk(history, setup, |w| {
            if w.restarted {
                seen.clear();
                restarts.push(w.t);
            }
            note_exhaustions(w.t, w.judged, &mut seen, &mut found);
            points.push(Point {
                t: w.t,
                demand: demand_of(std::iter::once((w.judged, Some(w.sample)))),
                restarted: w.restarted,
            });
        });
        Track {
            labels: history.labels.clone(),
            points,
            exhaustions: found.iter().map(|e| (e.at_ms, e.series)).collect(),
            restarts,
        }
    }

    fn first(&self) -> Option<u64> {
        self.points.first().map(|p| p.t)
    }

    fn last(&self) -> Option<u64> {
        self.points.last().map(|p| p.t)
    }

    /// The process `at` belongs to: its first exhaustion, and when it ends in the data.
    fn process(&self, at: u64) -> (Option<(u64, Series)>, u64) {
        let born = self.restarts.iter().copied().filter(|&r| r <= at).max();
        let end = self.restarts.iter().copied().find(|&r| r > at);
        let exhaustion = self
            .exhaustions
            .iter()
            .copied()
            .find(|&(e, _)| born.is_none_or(|b| e >= b) && end.is_none_or(|x| e < x));
        (exhaustion, end.or(self.last()).unwrap_or(at))
    }
}

/// What a replica is doing in the simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Its recorded process is judged.
    Judging,
    /// Gone: the simulated kubelet restarts it, done at `done_ms`. `new_process`: its
    /// history has shown a new process since the go.
    Restarting { done_ms: u64, new_process: bool },
    /// Restarted: healthy until its history shows a new process.
    Restarted,
}

/// A restart due, not gone yet.
#[derive(Debug, Clone, Copy)]
struct Open {
    due_ms: u64,
    tte_s: Option<f64>,
}

/// One replica's simulation.
struct Sim {
    slots: Slots,
    phase: Phase,
    open: Option<Open>,
    episodes: Vec<Episode>,
    /// The next point of its track to read.
    next: usize,
}

impl Sim {
    /// The point of `track` in force at `t` (`None` outside its history), and whether a new
    /// process started since the last tick.
    fn advance<'t>(&mut self, track: &'t Track, t: u64) -> (Option<&'t Point>, bool) {
        let mut new_process = false;
        while let Some(p) = track.points.get(self.next).filter(|p| p.t <= t) {
            new_process |= p.restarted;
            self.next += 1;
        }
        let current = match self.next {
            0 => None,
            _ if track.last().is_some_and(|l| t > l) => None,
            i => track.points.get(i - 1),
        };
        (current, new_process)
    }

    fn tick(&mut self, track: &Track, api: &MemoryLeases, t: u64, fleet: &FleetSetup) {
        let (point, new_process) = self.advance(track, t);
        self.transition(t, new_process);
        let demand = match self.phase {
            Phase::Judging => point.map(|p| p.demand.clone()).unwrap_or_default(),
            Phase::Restarting { .. } => Demand {
                restart_due: true,
                settled: false,
                tte_s: point.and_then(|p| p.demand.tte_s),
            },
            Phase::Restarted => Demand {
                restart_due: false,
                settled: true,
                tte_s: None,
            },
        };
        let now = Now {
            mono_ms: t,
            unix_ms: t,
        };
        // The in-memory API answers at once: the step completes on its first poll.
        let _ = self.slots.step(api, now, &demand).now_or_never();
        if self.phase != Phase::Judging {
            return;
        }
        if point.is_none() {
            // Outside its history: a wait still open ends with it.
            if let Some(o) = self.open.take() {
                let end = track.last().unwrap_or(t);
                self.close(o, Outcome::HistoryEnd, end, None);
            }
            return;
        }
        let go = if demand.restart_due {
            self.slots.status(now).go
        } else {
            None
        };
        self.gate(t, &demand, go, fleet);
    }

    fn transition(&mut self, t: u64, new_process: bool) {
        match &mut self.phase {
            Phase::Restarting {
                done_ms,
                new_process: seen,
            } => {
                *seen |= new_process;
                if t >= *done_ms {
                    self.phase = if *seen {
                        Phase::Judging
                    } else {
                        Phase::Restarted
                    };
                }
            }
            Phase::Restarted if new_process => self.phase = Phase::Judging,
            Phase::Restarted => {}
            Phase::Judging if new_process => {
                if let Some(o) = self.open.take() {
                    self.close(o, Outcome::HistoryRestart, t, None);
                }
            }
            Phase::Judging => {}
        }
    }

    /// The gate at `t`: due and may fail goes, due and may not is deferred.
    fn gate(&mut self, t: u64, demand: &Demand, go: Option<GoReason>, fleet: &FleetSetup) {
        if !demand.restart_due {
            if let Some(o) = self.open.take() {
                self.close(o, Outcome::Cleared, t, None);
            }
            return;
        }
        let open = *self.open.get_or_insert(Open {
            due_ms: t,
            tte_s: demand.tte_s,
        });
        let Some(reason) = go else { return };
        self.open = None;
        let done_ms = t.saturating_add(ms(fleet.restart_cost));
        let go = Go {
            at_ms: t,
            reason,
            tte_s: demand.tte_s,
            restart_ms: done_ms,
        };
        self.close(open, Outcome::Restarted, t, Some(go));
        self.phase = Phase::Restarting {
            done_ms,
            new_process: false,
        };
    }

    fn close(&mut self, open: Open, outcome: Outcome, until_ms: u64, go: Option<Go>) {
        self.episodes.push(Episode {
            due_ms: open.due_ms,
            tte_at_due_s: open.tte_s,
            go,
            outcome,
            waited_until_ms: until_ms,
            exhaustion: None,
            process_end_ms: until_ms,
        });
    }
}

/// Replay `histories` as the replicas of one fleet.
pub fn simulate(histories: &[TargetHistory], setup: &Setup, fleet: &FleetSetup) -> FleetReport {
    let tracks: Vec<Track> = histories.iter().map(|h| Track::of(h, setup)).collect();
    let k = fleet.cfg.max_concurrent.max(1);
    let api = MemoryLeases::with((0..k).map(|i| fleet.cfg.lease_name(i)));
    let mut sims: Vec<Sim> = tracks
        .iter()
        .map(|t| Sim {
            slots: Slots::new(fleet.cfg.clone(), labels_text(&t.labels), "backtest".into()),
            phase: Phase::Judging,
            open: None,
            episodes: Vec::new(),
            next: 0,
        })
        .collect();
    let mut report = FleetReport {
        setup: fleet.clone(),
        replicas: Vec::new(),
        ticks: 0,
        worst_concurrent: 0,
        worst_at_ms: None,
        most_slots_held: 0,
        rounds: Vec::new(),
    };
    let first = tracks.iter().filter_map(Track::first).min();
    let last = tracks.iter().filter_map(Track::last).max();
    if let (Some(first), Some(last)) = (first, last) {
        let step = ms(fleet.tick.min(MAX_TICK)).max(1);
        let mut t = first;
        while t <= last {
            lockstep(&mut sims, &tracks, &api, t, report.ticks, fleet);
            note_tick(&mut report, &sims, &api, k, t);
            report.ticks += 1;
            t = t.saturating_add(step);
        }
    }
    conclude(&mut report, sims, &tracks);
    report
}

/// One tick of every replica, in turn: the first one rotates each tick, so that no replica
/// is always first to find a slot free.
fn lockstep(
    sims: &mut [Sim],
    tracks: &[Track],
    api: &MemoryLeases,
    t: u64,
    tick: usize,
    fleet: &FleetSetup,
) {
    let n = sims.len();
    for j in 0..n {
        let i = (tick + j) % n;
        if let (Some(sim), Some(track)) = (sims.get_mut(i), tracks.get(i)) {
            sim.tick(track, api, t, fleet);
        }
    }
}

fn note_tick(report: &mut FleetReport, sims: &[Sim], api: &MemoryLeases, k: u32, t: u64) {
    let restarting = sims
        .iter()
        .filter(|s| matches!(s.phase, Phase::Restarting { .. }))
        .count();
    if restarting > report.worst_concurrent {
        report.worst_concurrent = restarting;
        report.worst_at_ms = Some(t);
    }
    let held = (0..k)
        .filter_map(|i| api.peek(&report.setup.cfg.lease_name(i)))
        .filter(|l| l.holder().is_some())
        .count();
    report.most_slots_held = report.most_slots_held.max(held);
}

/// Waits still open end with the history; each episode learns its process's exhaustion;
/// the rounds.
fn conclude(report: &mut FleetReport, sims: Vec<Sim>, tracks: &[Track]) {
    for (mut sim, track) in sims.into_iter().zip(tracks) {
        if let Some(o) = sim.open.take() {
            let end = track.last().unwrap_or(o.due_ms);
            sim.close(o, Outcome::HistoryEnd, end, None);
        }
        for e in &mut sim.episodes {
            (e.exhaustion, e.process_end_ms) = track.process(e.due_ms);
        }
        report.replicas.push(ReplicaReport {
            labels: track.labels.clone(),
            episodes: sim.episodes,
        });
    }
    report.rounds = rounds(&report.replicas);
}

/// The episodes that overlap in time (from due to the simulated restart, or to the end of
/// the wait), merged; those in which something went.
fn rounds(replicas: &[ReplicaReport]) -> Vec<Round> {
    let mut spans: Vec<(u64, u64, Option<Go>, usize)> = replicas
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.episodes.iter().map(move |e| (e, i)))
        .map(|(e, i)| {
            let end = e.go.map_or(e.waited_until_ms, |g| g.restart_ms);
            (e.due_ms, end, e.go, i)
        })
        .collect();
    spans.sort_by_key(|s| (s.0, s.1));
    let mut out = Vec::new();
    let mut current: Option<(u64, Vec<Go>, BTreeSet<usize>)> = None;
    for (from, to, go, i) in spans {
        match current.as_mut() {
            Some((end, gos, who)) if from <= *end => {
                *end = (*end).max(to);
                gos.extend(go);
                who.extend(go.map(|_| i));
            }
            _ => {
                out.extend(current.take().and_then(round));
                current = Some((
                    to,
                    go.into_iter().collect(),
                    go.map(|_| i).into_iter().collect(),
                ));
            }
        }
    }
    out.extend(current.and_then(round));
    out
}

fn round((_, gos, who): (u64, Vec<Go>, BTreeSet<usize>)) -> Option<Round> {
    Some(Round {
        first_go_ms: gos.iter().map(|g| g.at_ms).min()?,
        last_restart_ms: gos.iter().map(|g| g.restart_ms).max()?,
        replicas: who.len(),
    })
}
