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
mod tests {
    //! The tick on a fixture /proc tree: pid reuse (a new starttime), a vanished target and
    //! a zombie, which a live test cannot stage on demand.

    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::test_support::FakeProc;

    /// `/proc/4242` whose stat says `state` and `starttime`, holding three fds.
    pub(super) fn write_pid(root: &Path, state: char, starttime: u64) {
        FakeProc::new(root)
            .pid(4242)
            .stat(state, starttime)
            .status()
            .limits()
            .cmdline(&["fixture"])
            .fds((0..3).map(|fd| (fd, "/dev/null")));
    }

    fn pipeline(root: &Path) -> Pipeline {
        pipeline_with(root, |_| {})
    }

    /// A pipeline of pid 4242 under the fixture root, its target config adjusted by `f`.
    pub(super) fn pipeline_with(root: &Path, f: impl FnOnce(&mut TargetConfig)) -> Pipeline {
        let mut target = TargetConfig::from_selector(Selector::Pid(4242));
        f(&mut target);
        let config = Config {
            proc_root: root.to_path_buf(),
            cgroup_root: root.join("no-cgroup"),
            targets: vec![target],
            ..Config::default()
        };
        Pipeline::new(config)
    }

    fn fds_samples(t: &TargetStatus) -> usize {
        t.judged
            .series
            .iter()
            .find(|s| s.series == crate::judge::Series::Fds)
            .and_then(|s| s.trend.as_ref())
            .map_or(0, |tr| tr.samples)
    }

    #[test]
    fn a_reused_pid_is_a_restart_with_fresh_windows() {
        let root = tempfile::tempdir().unwrap();
        write_pid(root.path(), 'S', 1000);
        let mut w = pipeline(root.path());
        // Ticks a few ms apart: a trend needs distinct sample times.
        let tick = |w: &mut Pipeline| {
            std::thread::sleep(std::time::Duration::from_millis(3));
            w.tick()
        };
        for _ in 0..3 {
            tick(&mut w);
        }
        let t = &tick(&mut w)[0];
        assert!(t.found);
        assert_eq!(t.restarts_total, 0);
        assert_eq!(fds_samples(t), 4);
        assert_eq!(t.target.map(|id| id.starttime_ticks), Some(1000));

        write_pid(root.path(), 'S', 2000);
        let t = &tick(&mut w)[0];
        assert!(t.found);
        assert_eq!(t.target.map(|id| id.starttime_ticks), Some(2000));
        assert_eq!(t.restarts_total, 1);
        assert!(fds_samples(t) < 3, "windows reset on pid reuse");
        assert!(t.verdict().healthy);
    }

    #[test]
    fn a_vanished_target_is_missing_and_fails_open() {
        let root = tempfile::tempdir().unwrap();
        write_pid(root.path(), 'S', 1000);
        let mut w = pipeline(root.path());
        assert!(w.tick()[0].found);
        fs::remove_dir_all(root.path().join("4242")).unwrap();
        let t = &w.tick()[0];
        assert!(!t.found);
        assert!(t.target.is_none());
        let why = t.missing_reason.as_deref().unwrap_or("");
        assert!(why.contains("pid 4242") && why.contains("exited"), "{why}");
        assert!(t.verdict().healthy);
        assert!(
            t.verdict().notes[0].contains("failing open"),
            "{:?}",
            t.verdict()
        );

        // It comes back as a new process: a restart.
        write_pid(root.path(), 'S', 3000);
        let t = &w.tick()[0];
        assert!(t.found);
        assert_eq!(t.restarts_total, 1);
    }

    #[test]
    fn a_zombie_target_fails_open_with_the_reason() {
        let root = tempfile::tempdir().unwrap();
        write_pid(root.path(), 'S', 1000);
        let mut w = pipeline(root.path());
        w.tick();
        write_pid(root.path(), 'Z', 1000);
        let t = &w.tick()[0];
        assert!(!t.found);
        assert!(t.verdict().healthy);
        assert!(
            t.verdict().notes.iter().any(|n| n.contains("zombie")),
            "{:?}",
            t.verdict()
        );
    }
}

#[cfg(test)]
mod action_tests {
    //! Actions from the tick, on a fixture /proc tree: the restart budget, which takes three
    //! restarts that followed an unhealthy verdict (staged by new start times).

    use std::fs;
    use std::time::Duration;

    use super::tests_support::{pipeline_with, write_pid};
    use crate::actions::ActionOutcome;
    use crate::config::actions::ExecConfig;
    use crate::config::ActionsConfig;
    use crate::judge::{Rule, Series};

    #[test]
    fn nothing_fires_while_the_restart_budget_is_exhausted() {
        let root = tempfile::tempdir().unwrap();
        write_pid(root.path(), 'S', 1000);
        let mut w = pipeline_with(root.path(), |t| {
            // The fixture holds 3 fds: over max = 1 on every tick.
            t.rules = vec![(
                Series::Fds,
                Rule {
                    max: Some(1.0),
                    ..Rule::default()
                },
            )];
            t.judge.fail_after = 1;
            t.actions = ActionsConfig {
                cooldown: Duration::ZERO,
                max_per_hour: 100,
                exec: Some(ExecConfig {
                    argv: vec!["true".into()],
                    timeout: Duration::from_secs(10),
                }),
                ..ActionsConfig::default()
            };
        });
        let mut fired = 0;
        for restart in 0..4u64 {
            std::thread::sleep(Duration::from_millis(3));
            let t = w.tick().remove(0);
            let last = t.actions.last.clone().expect("a flip on every new process");
            if restart < 3 {
                assert!(!t.verdict().healthy);
                // Wait for the hook to finish before the next flip.
                let done = (0..500).any(|_| {
                    std::thread::sleep(Duration::from_millis(10));
                    let a = w.targets[0].actions.status(&w.targets[0].cfg.actions);
                    a.last.is_some_and(|l| !l.running && l.results.len() == 1)
                });
                assert!(done, "the hook did not finish");
                fired += 1;
            } else {
                // The budget is exhausted: leakwatch fails open, and nothing is sent.
                assert!(t.verdict().healthy, "{:?}", t.verdict());
                assert!(t.judged.budget.exhausted);
                assert_eq!(last.results.len(), 1, "{last:?}");
                assert_eq!(last.results[0].result, ActionOutcome::Skipped);
                assert!(
                    last.results[0].detail.contains("restart budget"),
                    "{last:?}"
                );
            }
            // A new process takes the pid: a restart that followed an unhealthy verdict.
            write_pid(root.path(), 'S', 2000 + restart);
        }
        assert_eq!(fired, 3);
        let counts = w.targets[0]
            .actions
            .status(&w.targets[0].cfg.actions)
            .counts;
        let count = |r: ActionOutcome| counts.iter().find(|c| c.result == r).unwrap().count;
        assert_eq!(
            (count(ActionOutcome::Ok), count(ActionOutcome::Skipped)),
            (3, 1),
            "{counts:?}"
        );
        fs::remove_dir_all(root.path().join("4242")).unwrap();
    }
}

#[cfg(test)]
mod log_tests {
    //! What the tick logs when the verdict flips, on a real child (`sleep`): the signal action
    //! needs a real process to signal (SIGCONT, which a sleeping process ignores).

    use std::io::Write;
    use std::process::{Child, Command};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::config::actions::{SignalConfig, SignalName};
    use crate::config::ActionsConfig;
    use crate::judge::{Rule, Series};

    /// The log lines written while `f` runs on this thread.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        // Each log callsite caches whether any subscriber wants it. A test on another thread
        // that reaches a callsite first, with no subscriber of its own, may cache "never"
        // while ours is being installed, and our lines are dropped. Rebuild the caches once
        // ours is in place.
        let r = tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            f()
        });
        let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
        (r, text)
    }

    /// A pipeline of `child` on the real /proc: more than one fd fails at once, and the flip
    /// sends SIGCONT with `grace`.
    fn pipeline(child: &Child, grace: Duration) -> Pipeline {
        let mut target = TargetConfig::from_selector(Selector::Pid(child.id() as i32));
        target.rules = vec![(
            Series::Fds,
            Rule {
                max: Some(1.0),
                ..Rule::default()
            },
        )];
        target.judge.fail_after = 1;
        target.actions = ActionsConfig {
            signal: Some(SignalConfig {
                signal: SignalName {
                    number: libc::SIGCONT,
                },
                grace,
            }),
            ..ActionsConfig::default()
        };
        Pipeline::new(Config {
            targets: vec![target],
            ..Config::default()
        })
    }

    fn sleeper() -> Child {
        Command::new("sleep")
            .arg("120")
            .spawn()
            .expect("spawn sleep")
    }

    /// The tick logged "/healthz now answers 503" before the actions held the verdict at
    /// 200 for the signal's grace: the log said 503 while /healthz answered 200.
    #[test]
    fn during_signal_grace_the_log_does_not_claim_503() {
        let mut child = sleeper();
        let mut w = pipeline(&child, Duration::from_secs(3600));
        let (status, log) = logged(|| w.tick().remove(0));
        assert!(status.found, "{:?}", status.missing_reason);
        assert!(status.verdict().healthy, "held: {:?}", status.verdict());
        assert!(!log.contains("now answers 503"), "{log}");
        assert!(
            log.contains("unhealthy: signal_grace holds /healthz at 200"),
            "{log}"
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn without_a_grace_or_once_it_is_over_the_log_says_503() {
        let mut child = sleeper();
        let mut w = pipeline(&child, Duration::ZERO);
        let (status, log) = logged(|| w.tick().remove(0));
        assert!(!status.verdict().healthy);
        assert!(log.contains("unhealthy: /healthz now answers 503"), "{log}");

        // A grace that is over by the next tick: the 503 is logged when it begins.
        let mut w = pipeline(&child, Duration::from_millis(50));
        let (status, log) = logged(|| w.tick().remove(0));
        assert!(status.verdict().healthy);
        assert!(!log.contains("now answers 503"), "{log}");
        std::thread::sleep(Duration::from_millis(200));
        let (status, log) = logged(|| w.tick().remove(0));
        assert!(!status.verdict().healthy);
        assert!(log.contains("unhealthy: /healthz now answers 503"), "{log}");
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod observe_tests {
    //! Observe mode through the tick, on a fixture /proc tree: the verdict answers 200 with
    //! `observe: would fail:` lines, the judge's flip is counted and fires the evidence
    //! actions only, no restart slot is asked for, and a reload to enforce fails it.

    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::tests_support::{pipeline_with, write_pid};
    use super::Pipeline;
    use crate::actions::{Action, ActionOutcome, ActionResult, OBSERVE_SKIP};
    use crate::config::actions::{BundleConfig, ExecConfig};
    use crate::config::{ActionsConfig, TargetConfig};
    use crate::judge::{Enforcement, Restraint, Rule, Series};
    use crate::snapshot::TargetStatus;

    /// pid 4242 holds 3 fds: over `max = 1` on every tick.
    fn failing_fds(t: &mut TargetConfig) {
        t.rules = vec![(
            Series::Fds,
            Rule {
                max: Some(1.0),
                ..Rule::default()
            },
        )];
        t.judge.fail_after = 1;
    }

    /// A failing target in observe mode with a bundle and an exec hook on its flips.
    fn observed(root: &Path, bundles: &Path) -> Pipeline {
        pipeline_with(root, |t| {
            failing_fds(t);
            t.mode = Enforcement::Observe;
            t.actions = ActionsConfig {
                cooldown: Duration::ZERO,
                max_per_hour: 100,
                bundle: Some(BundleConfig {
                    dir: bundles.to_path_buf(),
                    ..BundleConfig::default()
                }),
                exec: Some(ExecConfig {
                    argv: vec!["true".into()],
                    timeout: Duration::from_secs(10),
                }),
                ..ActionsConfig::default()
            };
        })
    }

    /// The results of the last firing once it is done.
    fn fired(p: &Pipeline) -> Vec<ActionResult> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let w = &p.targets[0];
            if let Some(last) = w.actions.status(&w.cfg.actions).last {
                if !last.running {
                    return last.results;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the actions did not finish");
    }

    fn result(results: &[ActionResult], a: Action) -> &ActionResult {
        results
            .iter()
            .find(|r| r.action == a)
            .unwrap_or_else(|| panic!("no {a:?} in {results:?}"))
    }

    fn tick(p: &mut Pipeline) -> TargetStatus {
        std::thread::sleep(Duration::from_millis(3));
        p.tick().remove(0)
    }

    #[test]
    fn an_observe_target_answers_200_runs_only_the_bundle_and_fails_once_enforced() {
        let root = tempfile::tempdir().unwrap();
        let bundles = tempfile::tempdir().unwrap();
        write_pid(root.path(), 'S', 1000);
        let mut p = observed(root.path(), bundles.path());

        let t = tick(&mut p);
        let v = t.verdict();
        assert!(v.healthy, "{v:?}");
        assert!(v.failing.is_empty(), "{v:?}");
        assert_eq!(v.restraint, Some(Restraint::Observe));
        assert!(
            v.notes[0].starts_with("observe: would fail: fds: 3"),
            "{:?}",
            v.notes
        );
        assert_eq!(t.mode, Enforcement::Observe);
        assert_eq!(t.would_fail_flips_total, 1, "the judge's flip is counted");
        // The flip fired: the bundle ran, the exec hook (which may restart) did not.
        let results = fired(&p);
        let bundle = result(&results, Action::Bundle);
        assert_eq!(bundle.result, ActionOutcome::Ok, "{bundle:?}");
        let exec = result(&results, Action::Exec);
        assert_eq!(exec.result, ActionOutcome::Skipped);
        assert_eq!(exec.detail, OBSERVE_SKIP);
        assert!(exec.detail.starts_with("observe mode"));

        // Still failing: no new flip.
        let t = tick(&mut p);
        assert!(t.verdict().healthy);
        assert_eq!(t.would_fail_flips_total, 1);

        // SIGHUP with mode = "enforce": the same target, windows kept, fails now.
        let mut config = p.config().clone();
        config.targets[0].mode = Enforcement::Enforce;
        let changes = p.reload(config);
        assert_eq!(
            changes,
            ["pid-4242: mode observe -> enforce: a failing verdict fails /healthz"]
        );
        let t = tick(&mut p);
        let v = t.verdict();
        assert!(!v.healthy, "{v:?}");
        assert_eq!(v.restraint, None);
        assert!(v.failing[0].starts_with("fds: 3"), "{v:?}");
        assert_eq!(t.mode, Enforcement::Enforce);
        assert_eq!(
            t.would_fail_flips_total, 1,
            "an enforced flip is no would-be"
        );
        // Switched while failing, it flips again: every action runs now.
        let results = fired(&p);
        assert_eq!(result(&results, Action::Exec).result, ActionOutcome::Ok);
        assert_eq!(result(&results, Action::Bundle).result, ActionOutcome::Ok);

        // And back to observe: 200 again.
        let mut config = p.config().clone();
        config.targets[0].mode = Enforcement::Observe;
        let changes = p.reload(config);
        assert_eq!(
            changes,
            ["pid-4242: mode enforce -> observe: /healthz answers 200 and says what would fail"]
        );
        assert!(tick(&mut p).verdict().would_fail());
    }

    #[test]
    fn listed_in_actions_observe_the_exec_hook_runs_too() {
        let root = tempfile::tempdir().unwrap();
        let bundles = tempfile::tempdir().unwrap();
        write_pid(root.path(), 'S', 1000);
        let mut p = observed(root.path(), bundles.path());
        let mut config = p.config().clone();
        config.targets[0].actions.observe = vec![Action::Exec];
        p.reload(config);
        assert!(tick(&mut p).verdict().healthy);
        let results = fired(&p);
        assert_eq!(result(&results, Action::Exec).result, ActionOutcome::Ok);
        let bundle = result(&results, Action::Bundle);
        assert_eq!(
            (bundle.result, bundle.detail.as_str()),
            (ActionOutcome::Skipped, OBSERVE_SKIP)
        );
    }

    /// With `[fleet]` (no API here: the local fallback), a failing observe target asks for
    /// no restart and is not deferred; enforced, it asks.
    #[test]
    fn an_observe_target_never_asks_the_fleet_for_a_slot() {
        let root = tempfile::tempdir().unwrap();
        write_pid(root.path(), 'S', 1000);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _in_runtime = rt.enter();
        let mut cfg = crate::fleet::FleetConfig::new("observe-test", 1);
        cfg.kubeconfig = Some(root.path().join("no-kubeconfig"));
        cfg.identity = Some("observe-test-0".into());
        let fleet = crate::fleet::task::Fleet::spawn(cfg);
        let mut p = pipeline_with(root.path(), |t| {
            failing_fds(t);
            t.mode = Enforcement::Observe;
        })
        .with_fleet(Some(Arc::clone(&fleet.link)));
        let asked = |p: &mut Pipeline| -> (TargetStatus, bool) {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let t = tick(p);
                if let Some(s) = p.fleet_status() {
                    return (t, s.deferred.is_some() || s.go.is_some());
                }
                assert!(Instant::now() < deadline, "the fleet never answered");
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let (t, wants) = asked(&mut p);
        assert_eq!(t.verdict().restraint, Some(Restraint::Observe));
        assert!(!wants, "{:?}", p.fleet_status());
        // Still not after the fleet stepped on this tick's demand.
        std::thread::sleep(Duration::from_millis(300));
        let (t, wants) = asked(&mut p);
        assert_eq!(t.verdict().restraint, Some(Restraint::Observe));
        assert!(!wants, "{:?}", p.fleet_status());

        let mut config = p.config().clone();
        config.targets[0].mode = Enforcement::Enforce;
        p.reload(config);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (t, wants) = asked(&mut p);
            if wants {
                assert_ne!(t.verdict().restraint, Some(Restraint::Observe));
                break;
            }
            assert!(Instant::now() < deadline, "{:?}", p.fleet_status());
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(fleet);
    }
}

#[cfg(test)]
mod cadence_tests {
    //! A value read at its own cadence (the heap, from smaps every `smaps_every`), through
    //! the tick on a fixture /proc tree: between reads the published sample keeps the last
    //! value read of the same process with its age, which the judge takes no point from; a
    //! new process starts empty; a read that fails leaves the value unknown until the next.

    use std::fs;
    use std::path::Path;
    use std::time::Duration;

    use super::tests_support::{pipeline_with, write_pid};
    use super::Pipeline;
    use crate::collect::{CollectOptions, Collector};
    use crate::error::UnknownKind;
    use crate::judge::{Rule, Series, SeriesStatus};
    use crate::sample::{Source, TargetId};
    use crate::snapshot::TargetStatus;
    use crate::test_support::FakeProc;

    const KIB: u64 = 1024;

    /// The fixture's heap estimate with `heap_kib` of `[heap]`.
    fn estimate(heap_kib: u64) -> u64 {
        (heap_kib + 3136) * KIB
    }

    fn smaps(root: &Path, heap_kib: u64) {
        FakeProc::new(root).pid(4242).smaps(heap_kib);
    }

    /// pid 4242 with an smaps, watched with `smaps_every` far longer than the test: only a
    /// new process's first tick reads it, and the ones [`read_next_tick`] asks for.
    fn watched(root: &Path) -> Pipeline {
        write_pid(root, 'S', 1000);
        smaps(root, 80);
        // A rule on the heap, so that it is judged (far over what the fixture holds).
        let mut p = pipeline_with(root, |t| {
            let rule = Rule {
                max: Some(1e12),
                ..Rule::default()
            };
            t.rules = vec![(Series::Heap, rule)];
        });
        p.config.smaps_every = Duration::from_secs(3600);
        p
    }

    /// As if `smaps_every` had gone by.
    fn read_next_tick(p: &mut Pipeline) {
        p.targets[0].last_smaps_mono_ms = None;
    }

    fn tick(p: &mut Pipeline) -> TargetStatus {
        std::thread::sleep(Duration::from_millis(5));
        p.tick().remove(0)
    }

    /// The heap estimate the sample publishes, and its age.
    fn heap(t: &TargetStatus) -> Option<(u64, u64)> {
        let h = t.sample.as_ref()?.heap.as_ref()?;
        Some((h.estimate_bytes, h.age_ms))
    }

    fn heap_kind(t: &TargetStatus) -> Option<UnknownKind> {
        let s = t.sample.as_ref()?;
        s.unknown.get(&Source::Heap).map(|u| u.kind)
    }

    fn judged_heap(t: &TargetStatus) -> &SeriesStatus {
        t.judged
            .series
            .iter()
            .find(|s| s.series == Series::Heap)
            .expect("the heap has a rule")
    }

    #[test]
    fn between_smaps_reads_the_heap_is_the_last_read_with_a_growing_age() {
        let root = tempfile::tempdir().unwrap();
        let mut p = watched(root.path());
        let mut reads = Vec::new();
        for i in 0..8 {
            if i == 3 || i == 6 {
                read_next_tick(&mut p);
            }
            let t = tick(&mut p);
            let read = i == 0 || i == 3 || i == 6;
            let (value, age) = heap(&t).unwrap_or_else(|| panic!("tick {i}: no heap"));
            let j = judged_heap(&t);
            if read {
                assert_eq!((value, age), (estimate(80 + i), 0), "tick {i}");
                assert_eq!(heap_kind(&t), None, "tick {i}");
                assert_eq!(j.value, Some(value as f64), "tick {i}");
                reads.push(age);
            } else {
                // The last read, of the same process; its age grows with every tick.
                let last = i / 3 * 3;
                assert_eq!(value, estimate(80 + last), "tick {i}");
                assert!(age >= 5 * (i - last), "tick {i}: age {age} ms");
                assert!(age > reads.last().copied().unwrap_or(0), "tick {i}: {age}");
                reads.push(age);
                assert_eq!(heap_kind(&t), Some(UnknownKind::NotCollected), "tick {i}");
                // The judge sees no value, as before: held, not judged again.
                assert!(j.not_collected && j.value.is_none(), "tick {i}: {j:?}");
            }
            let notes = &t.verdict().notes;
            assert!(
                !notes.iter().any(|n| n.contains("heap")),
                "tick {i}: {notes:?}"
            );
            // The smaps the next read will find; the ticks between do not read it.
            smaps(root.path(), 80 + i + 1);
        }
        // Only the three reads are points of the window, not the eight ticks.
        let trend = judged_heap(&p.tick().remove(0)).trend.clone();
        assert_eq!(trend.map(|t| t.samples), Some(3));
    }

    #[test]
    fn a_new_process_does_not_inherit_the_heap_of_the_one_before() {
        let root = tempfile::tempdir().unwrap();
        let mut p = watched(root.path());
        assert_eq!(heap(&tick(&mut p)), Some((estimate(80), 0)));
        assert!(heap(&tick(&mut p)).is_some_and(|(v, age)| v == estimate(80) && age > 0));
        // pid reuse, and the new process's smaps cannot be read (no such file).
        write_pid(root.path(), 'S', 2000);
        fs::remove_file(root.path().join("4242/smaps")).unwrap();
        let t = tick(&mut p);
        assert_eq!(t.restarts_total, 1);
        assert_eq!(heap(&t), None);
        assert_eq!(heap_kind(&t), Some(UnknownKind::Missing));
        let t = tick(&mut p);
        assert_eq!(heap(&t), None, "nothing read of this process yet");
        assert_eq!(heap_kind(&t), Some(UnknownKind::NotCollected));

        // The collector itself keeps nothing across processes on the same pid.
        let mut c = Collector::new(root.path(), root.path().join("no-cgroup"));
        let old = TargetId {
            pid: 4242,
            starttime_ticks: 2000,
        };
        smaps(root.path(), 100);
        let opts = CollectOptions::default();
        assert_eq!(
            c.collect(old, &opts).heap.map(|h| h.estimate_bytes),
            Some(estimate(100))
        );
        write_pid(root.path(), 'S', 3000);
        let new = TargetId {
            pid: 4242,
            starttime_ticks: 3000,
        };
        let skip = CollectOptions {
            smaps: false,
            ..CollectOptions::default()
        };
        let s = c.collect(new, &skip);
        assert_eq!(s.heap, None);
        assert_eq!(
            s.unknown.get(&Source::Heap).map(|u| u.kind),
            Some(UnknownKind::NotCollected)
        );
    }

    #[test]
    fn a_read_that_fails_leaves_the_heap_unknown_until_the_next_read() {
        let root = tempfile::tempdir().unwrap();
        let mut p = watched(root.path());
        assert_eq!(heap(&tick(&mut p)), Some((estimate(80), 0)));
        // smaps is a directory now: reading it fails (EISDIR), an error, not a cadence skip.
        let path = root.path().join("4242/smaps");
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        read_next_tick(&mut p);
        let t = tick(&mut p);
        assert_eq!(heap(&t), None, "unknown, not the last value");
        assert_eq!(heap_kind(&t), Some(UnknownKind::Io));
        let j = judged_heap(&t);
        assert!(!j.not_collected && j.unknown.is_some(), "{j:?}");
        // The ticks until the next read carry nothing from before the error.
        let t = tick(&mut p);
        assert_eq!(heap(&t), None);
        assert_eq!(heap_kind(&t), Some(UnknownKind::NotCollected));
        // Readable again: read at its cadence, and kept after.
        fs::remove_dir(&path).unwrap();
        smaps(root.path(), 90);
        read_next_tick(&mut p);
        assert_eq!(heap(&tick(&mut p)), Some((estimate(90), 0)));
        assert!(heap(&tick(&mut p)).is_some_and(|(v, age)| v == estimate(90) && age > 0));
    }
}
