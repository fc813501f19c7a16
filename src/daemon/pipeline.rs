//! One tick for every target, as a pipeline: resolve (following restarts and pid reuse),
//! collect, judge, detect the flip ([`FlipDetector`]), act on it ([`ActionRunner`]), apply
//! the actions' hold ([`crate::judge::hold`]: only the judge writes `healthy`) or, for a
//! target in observe mode, the observe restraint ([`Verdict::observed`]), publish.
//! Synchronous and blocking (it reads /proc): the daemon runs it on a blocking thread,
//! `check` calls it directly. (systemd's watchdog, `WATCHDOG=1`, is `notify.rs`'s: the tick
//! loop pings it while these ticks keep completing.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::record::Recorder;
use crate::actions::{ActionRunner, TickInput};
use crate::clock::{mono_ms, unix_ms};
use crate::collect::{CollectOptions, Collector};
use crate::config::{Config, TargetConfig};
use crate::error::UnknownKind;
use crate::fleet::task::Link;
use crate::fleet::{demand_of, FleetStatus};
use crate::judge::{
    Answer, Enforcement, FlipDetector, Health, Hold, Input, Judged, Restraint, TargetJudge,
    Transition, Verdict,
};
use crate::sample::{Sample, Source, TargetId, TargetState};
use crate::snapshot::{CollectorErrors, TargetStatus};
use crate::target::{ResolveError, Resolver, Selector};
use crate::units::duration_ms;

/// How many peers the top-K lists keep.
const TOP_PEERS: usize = 10;

/// The state of every target between ticks.
#[derive(Debug)]
pub struct Pipeline {
    config: Config,
    resolver: Resolver,
    collector: Collector,
    targets: Vec<Watched>,
    /// `record`: every tick's values appended to a file.
    recorder: Option<Recorder>,
    /// `[fleet]`: where the restart slots are asked for (the daemon's fleet task).
    fleet: Option<Arc<Link>>,
    /// The fleet status the last tick gated on.
    fleet_status: Option<FleetStatus>,
}

/// One target's state between ticks.
#[derive(Debug)]
struct Watched {
    cfg: TargetConfig,
    judge: TargetJudge,
    current: Option<TargetId>,
    since_unix_ms: Option<u64>,
    last_smaps_mono_ms: Option<u64>,
    errors: BTreeMap<(Source, UnknownKind), u64>,
    /// What was last logged per collector, so a lasting problem is logged once.
    logged: BTreeMap<Source, UnknownKind>,
    logged_missing: Option<String>,
    /// The one place the healthy/unhealthy edges are tracked.
    flips: FlipDetector,
    actions: ActionRunner,
    /// The process last sampled running: the signal action refuses it once it is gone.
    last_judged: Option<TargetId>,
    /// Flips to unhealthy found in observe mode (`leakwatch_would_fail_flips_total`).
    would_fail_flips: u64,
}

impl Watched {
    fn new(cfg: TargetConfig) -> Watched {
        Watched {
            cfg,
            judge: TargetJudge::new(),
            current: None,
            since_unix_ms: None,
            last_smaps_mono_ms: None,
            errors: BTreeMap::new(),
            logged: BTreeMap::new(),
            logged_missing: None,
            flips: FlipDetector::new(),
            actions: ActionRunner::new(),
            last_judged: None,
            would_fail_flips: 0,
        }
    }
}

impl Pipeline {
    pub fn new(config: Config) -> Pipeline {
        let targets = config.targets.iter().cloned().map(Watched::new).collect();
        Pipeline {
            recorder: recorder(&config),
            resolver: Resolver::new(&config.proc_root, &config.cgroup_root),
            collector: Collector::new(&config.proc_root, &config.cgroup_root),
            config,
            targets,
            fleet: None,
            fleet_status: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Gate every verdict on the fleet's restart slots, asked for through `link`.
    pub fn with_fleet(mut self, link: Option<Arc<Link>>) -> Pipeline {
        self.fleet = link;
        self
    }

    /// The fleet status the last tick gated on (`None` without `[fleet]`).
    pub fn fleet_status(&self) -> Option<&FleetStatus> {
        self.fleet_status.as_ref()
    }

    /// Take a new config: targets whose name and selector did not change keep their
    /// windows, rule states and restart log; the others start afresh. Returns what changed,
    /// for the log.
    pub fn reload(&mut self, config: Config) -> Vec<String> {
        let mut changes = Vec::new();
        if config.proc_root != self.config.proc_root
            || config.cgroup_root != self.config.cgroup_root
        {
            self.resolver = Resolver::new(&config.proc_root, &config.cgroup_root);
            self.collector = Collector::new(&config.proc_root, &config.cgroup_root);
            changes.push("proc_root/cgroup_root changed: every target starts afresh".into());
            self.targets.clear();
        }
        let mut old: Vec<Watched> = std::mem::take(&mut self.targets);
        for cfg in &config.targets {
            let kept = old
                .iter()
                .position(|w| w.cfg.name == cfg.name && w.cfg.selector == cfg.selector);
            let w = match kept {
                Some(i) => {
                    let mut w = old.swap_remove(i);
                    changes.extend(switch_mode(&mut w, cfg.mode));
                    if w.cfg != *cfg {
                        changes.push(format!("{}: judging changed, windows kept", cfg.name));
                    }
                    w.cfg = cfg.clone();
                    w
                }
                None => {
                    changes.push(format!("{}: new target ({})", cfg.name, cfg.selector));
                    Watched::new(cfg.clone())
                }
            };
            self.targets.push(w);
        }
        changes.extend(
            old.iter()
                .map(|w| format!("{}: no longer watched", w.cfg.name)),
        );
        if config.record.as_deref() != self.recorder.as_ref().map(|r| r.path()) {
            changes.push("record: the recording file changed".into());
            self.recorder = recorder(&config);
        }
        self.config = config;
        changes
    }

    /// One tick: every target resolved, sampled and judged; then, with the fleet's answer
    /// to what they need, each verdict gated, flipped, acted on and held.
    pub fn tick(&mut self) -> Vec<TargetStatus> {
        let mut found = Vec::with_capacity(self.targets.len());
        for w in &mut self.targets {
            let started = Instant::now();
            let sample = sample_target(w, &self.resolver, &mut self.collector, &self.config);
            let poll = started.elapsed().as_secs_f64();
            found.push((judge_observed(w, sample), poll));
        }
        self.fleet_status = self.fleet.as_ref().and_then(|f| {
            // Observe targets never ask for a restart slot.
            let judged = found
                .iter()
                .zip(&self.targets)
                .filter(|(_, w)| w.cfg.mode == Enforcement::Enforce)
                .map(|(((j, s, _), _), _)| (j, s.as_ref()));
            f.ask(demand_of(judged))
        });
        let mut out = Vec::with_capacity(self.targets.len());
        for (w, (observed, poll)) in self.targets.iter_mut().zip(found) {
            let gate = match (&self.fleet, w.cfg.mode) {
                (_, Enforcement::Observe) => Gate::Observe,
                (Some(_), Enforcement::Enforce) => Gate::Fleet(self.fleet_status.as_ref()),
                (None, Enforcement::Enforce) => Gate::Off,
            };
            out.push(finish(w, observed, poll, &self.config, gate));
        }
        if let Some(r) = self.recorder.as_mut() {
            r.record(&out);
        }
        release_freed_memory();
        out
    }
}

/// Give back to the kernel the pages a tick allocated and freed (the socket rows of a big
/// target: megabytes for a few milliseconds). glibc keeps freed memory in its arenas, so
/// without this leakwatch's memory would stay at its largest tick, not at what it holds
/// between ticks.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim(3) takes an integer (the padding to keep), touches only glibc's own
    // arenas under their locks, and is safe to call from any thread at any time. It stays
    // `unsafe` because it is glibc's, not a system call: neither rustix nor nix wraps it.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn recorder(config: &Config) -> Option<Recorder> {
    let path = config.record.as_ref()?;
    Some(Recorder::new(path, config.record_max_bytes))
}

/// Why there is no process to sample this tick.
struct NotFound {
    reason: String,
    /// leakwatch cannot see the target (hidepid, permissions): it fails open.
    unseen: bool,
}

impl NotFound {
    fn resolving(e: ResolveError) -> NotFound {
        NotFound {
            unseen: e.is_unseen(),
            reason: e.to_string(),
        }
    }
}

/// Resolve and collect one target; `Err` says why there is no process to sample.
fn sample_target(
    w: &mut Watched,
    resolver: &Resolver,
    collector: &mut Collector,
    config: &Config,
) -> Result<Sample, NotFound> {
    // A pidfile may point elsewhere at any time; other selectors keep their process while
    // it lives (the oldest match stays the oldest).
    let reresolve = w.current.is_none() || matches!(w.cfg.selector, Selector::Pidfile(_));
    if reresolve {
        switch_to(
            w,
            resolver
                .resolve(&w.cfg.selector)
                .map_err(NotFound::resolving)?,
        );
    }
    let Some(id) = w.current else {
        return Err(NotFound {
            reason: "no target".into(),
            unseen: false,
        });
    };
    let sample = collect(w, collector, config, id);
    if sample.state == TargetState::Running || reresolve {
        return Ok(sample);
    }
    // The process exited, is a zombie, or its pid was reused: look for its successor.
    match resolver.resolve(&w.cfg.selector) {
        Ok(next) if next != id => {
            switch_to(w, next);
            Ok(collect(w, collector, config, next))
        }
        Ok(_) => Ok(sample),
        Err(e) => {
            w.current = None;
            let mut why = NotFound::resolving(e);
            why.reason = format!("{id} exited; {}", why.reason);
            Err(why)
        }
    }
}

fn switch_to(w: &mut Watched, id: TargetId) {
    if w.current == Some(id) {
        return;
    }
    if let Some(old) = w.current {
        info!(target_name = %w.cfg.name, old = %old, new = %id, "target restarted: windows and rule states reset");
    } else {
        info!(target_name = %w.cfg.name, target = %id, selector = %w.cfg.selector, "watching");
    }
    w.judge.new_target(mono_ms());
    w.current = Some(id);
    w.since_unix_ms = Some(unix_ms());
    w.last_smaps_mono_ms = None;
    w.logged.clear();
    w.logged_missing = None;
}

fn collect(w: &mut Watched, collector: &mut Collector, config: &Config, id: TargetId) -> Sample {
    let now = mono_ms();
    let every = config.smaps_every.as_millis() as u64;
    let smaps = w
        .last_smaps_mono_ms
        .is_none_or(|t| now.saturating_sub(t) >= every);
    if smaps {
        w.last_smaps_mono_ms = Some(now);
    }
    let opts = CollectOptions {
        smaps,
        top_peers: TOP_PEERS,
        stuck_after: w.cfg.judge.stuck_after,
        stall_after: w.cfg.judge.stall_after,
        fd_types_every: config.fd_types_every,
    };
    collector.collect(id, &opts)
}

/// What stands between the judge's verdict and `/healthz`.
enum Gate<'a> {
    /// No `[fleet]`: the verdict as found.
    Off,
    /// `[fleet]`, and its last status (`None` before the fleet task's first step).
    Fleet(Option<&'a FleetStatus>),
    /// Observe mode: the flip and the actions see the verdict as found (only the evidence
    /// actions run); `/healthz` answers it restrained to 200, `restraint: observe`.
    Observe,
}

/// After resolve, collect and judge, the rest of one target's tick: the gate, detect the
/// flip, act on it, let the judge apply the actions' hold, log what `/healthz` answers now,
/// publish.
fn finish(
    w: &mut Watched,
    (mut judged, sample, missing): (Judged, Option<Sample>, Option<String>),
    poll_s: f64,
    config: &Config,
    gate: Gate<'_>,
) -> TargetStatus {
    let observe = matches!(gate, Gate::Observe);
    if let Gate::Fleet(status) = gate {
        judged.verdict = gate_verdict(std::mem::take(&mut judged.verdict), status);
    }
    let running = sample
        .as_ref()
        .filter(|s| s.state == TargetState::Running)
        .map(|s| s.target);
    if running.is_some() {
        w.last_judged = running;
    }
    let change = w.flips.found(running, judged.health());
    let input = TickInput {
        name: &w.cfg.name,
        cfg: &w.cfg.actions,
        proc_root: &config.proc_root,
        cgroup_root: &config.cgroup_root,
        window: w.cfg.judge.window,
        sample: sample.as_ref(),
        last_id: w.last_judged,
        judged: &judged,
        observe,
    };
    let hold = w.actions.tick(&input, change);
    let failing = judged.verdict.failing.join("; ");
    let found = std::mem::take(&mut judged.verdict);
    judged.verdict = if observe {
        observe_gate(w, change, found)
    } else {
        crate::judge::hold(found, hold)
    };
    log_answer(w, change, hold, &failing, &judged.verdict);
    TargetStatus {
        name: w.cfg.name.clone(),
        selector: w.cfg.selector.to_string(),
        found: running.is_some(),
        target: w.current,
        missing_reason: missing,
        watching_since_unix_ms: w.since_unix_ms.filter(|_| w.current.is_some()),
        restarts_total: w.judge.restarts_total(),
        sample,
        judged,
        collector_errors_total: w
            .errors
            .iter()
            .map(|(&(collector, reason), &count)| CollectorErrors {
                collector,
                reason,
                count,
            })
            .collect(),
        poll_duration_seconds: Some(poll_s),
        actions: w.actions.status(&w.cfg.actions),
        mode: w.cfg.mode,
        would_fail_flips_total: w.would_fail_flips,
    }
}

/// The observe gate: an observe target's failing verdict answers 200 (`restraint:
/// observe`, each line as `observe: would fail: ...`), and asks for no restart (none is
/// charged to the budget). The judge's flip to unhealthy is counted and logged: when
/// `/healthz` would have turned 503.
fn observe_gate(w: &mut Watched, change: Transition, found: Verdict) -> Verdict {
    if change.is_flip() && change.to == Health::Unhealthy {
        w.would_fail_flips += 1;
        warn!(
            target_name = %w.cfg.name,
            failing = %found.failing.join("; "),
            "observe mode: would fail; /healthz keeps answering 200"
        );
    }
    if !found.healthy {
        w.judge.forgo_restart();
    }
    found.observed()
}

/// Take a reload's `mode` for a kept target; what changed, for the log. Switched to
/// enforce, a target already failing flips again at its next tick (its actions fire, all
/// of them now).
fn switch_mode(w: &mut Watched, mode: Enforcement) -> Option<String> {
    let was = std::mem::replace(&mut w.cfg.mode, mode);
    if was == mode {
        return None;
    }
    let effect = match mode {
        Enforcement::Enforce => {
            w.flips.rearm();
            "a failing verdict fails /healthz"
        }
        Enforcement::Observe => "/healthz answers 200 and says what would fail",
    };
    Some(format!("{}: mode {was} -> {mode}: {effect}", w.cfg.name))
}

/// A verdict gated on the fleet: without a status yet (the task has not stepped), a failing
/// verdict is deferred like one waiting for a slot.
fn gate_verdict(found: Verdict, status: Option<&FleetStatus>) -> Verdict {
    match status {
        Some(s) => crate::fleet::gate(found, Some(s), unix_ms()),
        None if !found.healthy => found.restrained(
            Restraint::Deferred,
            "deferred: asking for a restart slot (the fleet has not answered yet)".into(),
        ),
        None => found,
    }
}

/// The judge's findings on this tick's sample, or on why there is none.
fn judge_observed(
    w: &mut Watched,
    observed: Result<Sample, NotFound>,
) -> (Judged, Option<Sample>, Option<String>) {
    match observed {
        Ok(sample) => {
            count_errors(w, &sample);
            let j = w
                .judge
                .judge(Input::Sample(&sample), &w.cfg.judge, &w.cfg.rules);
            (j, Some(sample), None)
        }
        Err(NotFound { reason, unseen }) => {
            if w.logged_missing.as_deref() != Some(reason.as_str()) {
                warn!(target_name = %w.cfg.name, reason = %reason, "target not found");
                w.logged_missing = Some(reason.clone());
            }
            let input = Input::Missing {
                reason: &reason,
                unseen,
                now_mono_ms: mono_ms(),
            };
            let j = w.judge.judge(input, &w.cfg.judge, &w.cfg.rules);
            (j, None, Some(reason))
        }
    }
}

/// Count every collector failure, and log each new one once (with its capability hint).
fn count_errors(w: &mut Watched, sample: &Sample) {
    for (&source, u) in &sample.unknown {
        let error = match u.kind {
            UnknownKind::NotCollected | UnknownKind::Gone | UnknownKind::Zombie => continue,
            UnknownKind::Unsupported | UnknownKind::Unavailable => false,
            _ => true,
        };
        if error {
            *w.errors.entry((source, u.kind)).or_default() += 1;
        }
        if w.logged.get(&source) != Some(&u.kind) {
            let (name, collector, reason) = (&w.cfg.name, source.as_str(), u.kind.as_str());
            if error {
                warn!(target_name = %name, collector, reason, "{}", u.message);
            } else {
                info!(target_name = %name, collector, reason, "{}", u.message);
            }
            w.logged.insert(source, u.kind);
        }
    }
    w.logged.retain(|s, _| sample.unknown.contains_key(s));
}

/// Log what `/healthz` answers when that changes, and a flip that a hold keeps at 200.
/// `failing`: the failing lines the judge found, before the hold.
fn log_answer(
    w: &mut Watched,
    change: Transition,
    hold: Option<Hold>,
    failing: &str,
    published: &Verdict,
) {
    let name = &w.cfg.name;
    if let Some(h) = hold.filter(|_| change.is_flip() && change.to == Health::Unhealthy) {
        warn!(
            target_name = %name,
            failing = %failing,
            "unhealthy: signal_grace holds /healthz at 200 for ~{}, then it answers 503",
            duration_ms(h.left_ms)
        );
    }
    match w.flips.answered(published) {
        Some(Answer::NowFailing) => {
            warn!(target_name = %name, failing = %published.failing.join("; "), "unhealthy: /healthz now answers 503");
        }
        Some(Answer::HealthyAgain) if published.would_fail() => {
            info!(target_name = %name, "observe mode: /healthz answers 200 again, saying what would fail");
        }
        Some(Answer::HealthyAgain) => info!(target_name = %name, "healthy again"),
        None => {}
    }
}

#[cfg(test)]
mod tests_support {
    pub(super) use super::tests::{pipeline_with, write_pid};
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod action_tests;

#[cfg(test)]
mod log_tests;

#[cfg(test)]
mod observe_tests;

#[cfg(test)]
mod cadence_tests;
