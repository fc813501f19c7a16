//! Actions on a healthy→unhealthy flip, before a restart destroys the evidence: a
//! diagnostics [`bundle`], a [`signal`] through a pidfd, an [`exec`] hook; all opt-in
//! (`[actions]`), behind the [`guard`] (cooldown, hourly cap, restart budget).
//!
//! The tick calls [`ActionRunner::tick`] for each target with the flip detector's
//! [`Transition`]; the actions never see or change the verdict. On a flip the guard decides, and a
//! thread of its own ("leakwatch-actions") runs the actions in order (bundle, signal, exec:
//! the bundle captures the state before a dump changes it, the hook gets the bundle's
//! path), so neither the tick loop nor HTTP ever waits for them. Results land in shared
//! state that the next tick publishes (`/status`, `leakwatch_actions_total`).
//!
//! With a `signal_grace`, the tick returns a [`Hold`] for that long after the flip: the judge
//! ([`crate::judge::hold`]) then keeps `/healthz` at 200 (with a note and the `would fail:`
//! lines), so a dump can finish before the kubelet acts.
//!
//! A target in observe mode flips as the judge finds it, but only the actions listed in
//! `[actions] observe` run (the bundle by default); the others are recorded as skipped
//! ([`OBSERVE_SKIP`]), and no grace is held (there is no 503 to hold back).

pub mod bundle;
pub mod exec;
pub mod guard;
mod job;
pub mod signal;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tracing::info;

use crate::clock::{mono_ms, unix_ms};
use crate::config::ActionsConfig;
use crate::judge::{Health, Hold, Judged, Transition};
use crate::sample::{Sample, TargetId, TargetState};

use bundle::HistoryRow;
use guard::{Decision, Guard};
use job::Job;

/// The three actions (the config names them in `[actions] observe`).
pub use crate::config::actions::Action;

/// How one action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    Ok,
    Failed,
    /// Not attempted: a guard, no process, or a target that is gone or not the one judged.
    Skipped,
}

impl ActionOutcome {
    pub const ALL: [ActionOutcome; 3] = [
        ActionOutcome::Ok,
        ActionOutcome::Failed,
        ActionOutcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionOutcome::Ok => "ok",
            ActionOutcome::Failed => "failed",
            ActionOutcome::Skipped => "skipped",
        }
    }
}

/// One action of one firing, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionResult {
    pub action: Action,
    pub result: ActionOutcome,
    /// What happened: the bundle's path, `SIGUSR2 sent to pid 123`, `exit 0`, or why not.
    pub detail: String,
}

/// One flip and what it set off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Firing {
    pub at_unix_ms: u64,
    pub pid: Option<i32>,
    /// Still running (the results so far are listed).
    pub running: bool,
    pub results: Vec<ActionResult>,
}

/// Count of one (action, result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionCount {
    pub action: Action,
    pub result: ActionOutcome,
    pub count: u64,
}

/// The `actions` part of a target in `/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActionsStatus {
    /// The actions configured for the target (empty: flips only log).
    pub configured: Vec<Action>,
    /// The actions a flip runs while the target is in observe mode (`[actions] observe`).
    pub observe: Vec<Action>,
    pub cooldown_s: f64,
    pub max_per_hour: u32,
    pub fired_last_hour: usize,
    /// The last flip and what came of it.
    pub last: Option<Firing>,
    /// The last error of any action (`bundle dir /x is read-only`), kept until one of the
    /// same action succeeds.
    pub last_error: Option<String>,
    /// While `signal_grace` holds `/healthz` at 200: milliseconds left.
    pub grace_left_ms: Option<u64>,
    /// Every (configured action, result) since start, zeros included.
    pub counts: Vec<ActionCount>,
}

/// What the action thread and the tick share.
#[derive(Debug, Default)]
struct Shared {
    running: bool,
    last: Option<Firing>,
    errors: BTreeMap<Action, String>,
    counts: BTreeMap<(Action, ActionOutcome), u64>,
}

impl Shared {
    fn record(&mut self, r: ActionResult) {
        *self.counts.entry((r.action, r.result)).or_default() += 1;
        match r.result {
            ActionOutcome::Failed => {
                self.errors.insert(r.action, r.detail.clone());
            }
            ActionOutcome::Ok => {
                self.errors.remove(&r.action);
            }
            ActionOutcome::Skipped => {}
        }
        if let Some(last) = self.last.as_mut() {
            last.results.push(r);
        }
    }
}

/// The detail of an action a flip in observe mode does not run.
pub const OBSERVE_SKIP: &str = "observe mode: not listed in [actions] observe";

/// What the tick knows of one target.
pub struct TickInput<'a> {
    pub name: &'a str,
    pub cfg: &'a ActionsConfig,
    pub proc_root: &'a std::path::Path,
    pub cgroup_root: &'a std::path::Path,
    /// The trend window: how much history `samples.csv` keeps.
    pub window: Duration,
    /// This tick's sample, if a process was sampled.
    pub sample: Option<&'a Sample>,
    /// The process last judged (kept after it exits: the signal then refuses it).
    pub last_id: Option<TargetId>,
    /// What the judge found, before any hold.
    pub judged: &'a Judged,
    /// The target is in observe mode: only `cfg.observe`'s actions run on its flip.
    pub observe: bool,
}

/// One target's actions between ticks.
#[derive(Debug, Default)]
pub struct ActionRunner {
    guard: Guard,
    history: VecDeque<HistoryRow>,
    history_of: Option<TargetId>,
    grace_until_mono_ms: Option<u64>,
    shared: Arc<Mutex<Shared>>,
}

impl ActionRunner {
    pub fn new() -> ActionRunner {
        ActionRunner::default()
    }

    /// Take this tick: keep the history and fire on a flip. Returns the hold the judge puts
    /// on this tick's verdict while a `signal_grace` runs.
    pub fn tick(&mut self, t: &TickInput<'_>, change: Transition) -> Option<Hold> {
        let now = mono_ms();
        if change.new_process || change.to == Health::Healthy || t.observe {
            self.grace_until_mono_ms = None;
        }
        self.keep_history(t);
        if change.is_flip() && !t.cfg.is_empty() {
            self.flip(t, now);
        }
        self.grace_until_mono_ms
            .filter(|u| *u > now)
            .map(|u| Hold { left_ms: u - now })
    }

    fn keep_history(&mut self, t: &TickInput<'_>) {
        let Some(s) = t.sample.filter(|s| s.state == TargetState::Running) else {
            return;
        };
        if t.cfg.bundle.is_none() {
            self.history.clear();
            return;
        }
        if self.history_of != Some(s.target) {
            self.history.clear();
            self.history_of = Some(s.target);
        }
        self.history.push_back(bundle::render::history_row(s));
        let window_ms = u64::try_from(t.window.as_millis()).unwrap_or(u64::MAX);
        while self
            .history
            .front()
            .is_some_and(|r| s.taken_at_unix_ms.saturating_sub(r.unix_ms) > window_ms)
        {
            self.history.pop_front();
        }
    }

    fn flip(&mut self, t: &TickInput<'_>, now: u64) {
        let cfg = t.cfg;
        // Observe mode runs only what `[actions] observe` lists; the rest is skipped.
        let run = if t.observe {
            cfg.for_observe()
        } else {
            cfg.clone()
        };
        let runs = run.configured();
        let held: Vec<Action> = configured(cfg)
            .into_iter()
            .filter(|a| !runs.contains(a))
            .collect();
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if shared.running {
            // The running firing keeps its place in `last`; this flip is only counted.
            info!(target_name = %t.name, "actions skipped: the previous ones are still running");
            for a in configured(cfg) {
                *shared
                    .counts
                    .entry((a, ActionOutcome::Skipped))
                    .or_default() += 1;
            }
            return;
        }
        let pid = t.sample.map(|s| s.target.pid).or(t.last_id.map(|i| i.pid));
        shared.last = Some(Firing {
            at_unix_ms: unix_ms(),
            pid,
            running: false,
            results: Vec::new(),
        });
        for &a in &held {
            shared.record(ActionResult {
                action: a,
                result: ActionOutcome::Skipped,
                detail: OBSERVE_SKIP.into(),
            });
        }
        if !held.is_empty() {
            info!(target_name = %t.name, skipped = ?held, "observe mode: actions not listed in [actions] observe skipped");
        }
        if run.is_empty() {
            return;
        }
        let exhausted = t.judged.budget.exhausted;
        let decision = self
            .guard
            .decide(now, cfg.cooldown, cfg.max_per_hour, exhausted, false);
        if let Decision::Skip(why) = decision {
            info!(target_name = %t.name, reason = %why, "actions skipped");
            for a in runs {
                shared.record(ActionResult {
                    action: a,
                    result: ActionOutcome::Skipped,
                    detail: why.clone(),
                });
            }
            return;
        }
        shared.running = true;
        if let Some(last) = shared.last.as_mut() {
            last.running = true;
        }
        drop(shared);
        self.start(t, run, now);
    }

    /// Run `run`'s actions (the guard let them fire) on a thread of their own.
    fn start(&mut self, t: &TickInput<'_>, run: ActionsConfig, now: u64) {
        if let Some(s) = run.signal.as_ref().filter(|_| !t.observe) {
            if !s.grace.is_zero() {
                let grace_ms = u64::try_from(s.grace.as_millis()).unwrap_or(u64::MAX);
                self.grace_until_mono_ms = Some(now.saturating_add(grace_ms));
            }
        }
        let actions = configured(&run);
        let job = Job {
            name: t.name.to_string(),
            cfg: run,
            proc_root: t.proc_root.to_path_buf(),
            cgroup_root: t.cgroup_root.to_path_buf(),
            sample: t
                .sample
                .filter(|s| s.state == TargetState::Running)
                .cloned(),
            judged: t.judged.clone(),
            failing: t.judged.verdict.failing.clone(),
            history: self.history.iter().cloned().collect(),
            id: t.sample.map(|s| s.target).or(t.last_id),
            observe: t.observe,
        };
        info!(target_name = %t.name, actions = ?actions, observe = t.observe, "firing actions on the flip");
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("leakwatch-actions".into())
            .spawn(move || job.run(&shared));
        if let Err(e) = spawned {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            for a in actions {
                shared.record(ActionResult {
                    action: a,
                    result: ActionOutcome::Failed,
                    detail: format!("cannot start the actions thread: {e}"),
                });
            }
            shared.running = false;
        }
    }

    /// The `actions` part of `/status`.
    pub fn status(&self, cfg: &ActionsConfig) -> ActionsStatus {
        let now = mono_ms();
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let configured = configured(cfg);
        let mut counts = Vec::new();
        let mut actions: Vec<Action> = configured.clone();
        for (a, _) in shared.counts.keys() {
            if !actions.contains(a) {
                actions.push(*a);
            }
        }
        actions.sort();
        for a in actions {
            for r in ActionOutcome::ALL {
                let count = shared.counts.get(&(a, r)).copied().unwrap_or(0);
                counts.push(ActionCount {
                    action: a,
                    result: r,
                    count,
                });
            }
        }
        ActionsStatus {
            configured,
            observe: cfg.observe.clone(),
            cooldown_s: cfg.cooldown.as_secs_f64(),
            max_per_hour: cfg.max_per_hour,
            fired_last_hour: self.guard.last_hour(now),
            last: shared.last.clone(),
            last_error: shared.errors.values().last().cloned(),
            grace_left_ms: self
                .grace_until_mono_ms
                .filter(|u| *u > now)
                .map(|u| u - now),
            counts,
        }
    }
}

fn configured(cfg: &ActionsConfig) -> Vec<Action> {
    cfg.configured()
}
