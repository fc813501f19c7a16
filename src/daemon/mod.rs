//! `leakwatch run`: the tick loop and the HTTP server on one tokio runtime.
//!
//! Every `interval` the [`Pipeline`] ticks on a blocking thread (it reads /proc); the result
//! is published as an immutable [`Snapshot`] on a `watch` channel that HTTP reads. A tick
//! that overruns the interval makes the next ones skip, never queue. Reloads wait for the
//! running tick. Under systemd: `READY=1` after the first tick, `WATCHDOG=1` only while
//! ticks keep completing, so a stalled poll gets leakwatch restarted.

pub mod notify;
pub mod pipeline;
pub mod record;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

use crate::clock::{mono_ms, unix_ms};
use crate::config::Config;
use crate::fleet::task::{Fleet, Link};
use crate::fleet::FleetStatus;
use crate::http::{self, AppState};
use crate::snapshot::{ConfigInfo, Snapshot, TargetStatus};

pub use notify::Notifier;
pub use pipeline::Pipeline;

/// What the outside asks of a running daemon.
#[derive(Debug)]
pub enum Control {
    /// A new, validated config (SIGHUP).
    Reload(Box<Config>),
    /// A reload was refused: the old config keeps running; the reason goes to `/status`.
    ReloadFailed(String),
    /// SIGTERM/SIGINT: finish and exit.
    Shutdown,
}

/// A daemon running on its own thread (the demo, tests): its address, its snapshots, and a
/// way to stop it.
#[derive(Debug)]
pub struct Handle {
    pub addr: SocketAddr,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    control: mpsc::UnboundedSender<Control>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Handle {
    pub fn send(&self, c: Control) {
        let _ = self.control.send(c);
    }

    /// Stop the daemon and wait for it.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        let _ = self.control.send(Control::Shutdown);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(anyhow::anyhow!("the daemon thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Start a daemon on a thread of its own, listening on `config.listen` (port 0 picks one).
pub fn spawn(config: Config) -> anyhow::Result<Handle> {
    let rt = runtime()?;
    let listener = rt.block_on(http::bind(config.listen))?;
    let addr = listener.local_addr()?;
    let probes = match config.probe_listen {
        Some(a) => Some(rt.block_on(http::bind(a))?),
        None => None,
    };
    let (control, control_rx) = mpsc::unbounded_channel();
    let parts = Parts::new(config, None)?;
    let snapshots = parts.snapshots.subscribe();
    let thread = std::thread::Builder::new()
        .name("leakwatch-daemon".into())
        .spawn(move || {
            rt.block_on(serve(
                parts,
                (listener, probes),
                control_rx,
                Notifier::none(),
            ))
        })?;
    Ok(Handle {
        addr,
        snapshots,
        control,
        thread: Some(thread),
    })
}

/// A runtime for the daemon: one thread runs HTTP and the loop; ticks go to a blocking
/// thread.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .thread_name("leakwatch")
        .build()?)
}

/// The channels a daemon publishes on.
pub struct Parts {
    config: Config,
    config_file: Option<String>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    token: watch::Sender<Option<Arc<str>>>,
}

impl Parts {
    pub fn new(config: Config, config_file: Option<String>) -> anyhow::Result<Parts> {
        let token = load_token(&config)?;
        let first = initial_snapshot(&config, config_file.clone());
        Ok(Parts {
            config,
            config_file,
            snapshots: watch::channel(Arc::new(first)).0,
            token: watch::channel(token).0,
        })
    }
}

fn load_token(config: &Config) -> anyhow::Result<Option<Arc<str>>> {
    match &config.http.token_file {
        Some(f) => Ok(Some(Arc::from(
            crate::config::read_token(f).map_err(anyhow::Error::msg)?,
        ))),
        None => Ok(None),
    }
}

/// Serve HTTP (the main listener, and the probe listener if any) and run the tick loop
/// until [`Control::Shutdown`].
pub async fn serve(
    parts: Parts,
    (listener, probes): (tokio::net::TcpListener, Option<tokio::net::TcpListener>),
    control: mpsc::UnboundedReceiver<Control>,
    notifier: Notifier,
) -> anyhow::Result<()> {
    let state = AppState {
        snapshot: parts.snapshots.subscribe(),
        token: parts.token.subscribe(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http_cfg = parts.config.http.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.await;
        };
        http::serve(listener, probes, state, &http_cfg, shutdown).await
    });
    let fleet = parts.config.fleet.clone().map(Fleet::spawn);
    let link = fleet.as_ref().map(|f| f.link.clone());
    let result = TickLoop::new(parts, notifier, link).run(control).await;
    if let Some(f) = fleet {
        f.stop().await;
    }
    let _ = stop_tx.send(());
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "HTTP server ended with an error"),
        Err(e) => warn!(error = %e, "HTTP server task failed"),
    }
    result
}

type Tick = (Pipeline, Option<Vec<TargetStatus>>, Duration);

struct TickLoop {
    parts: Parts,
    notifier: Notifier,
    /// Counted between publications; everything else carried from tick to tick (start time,
    /// sequence, ticks) lives in the last published snapshot.
    ticks_skipped_total: u64,
    info: ConfigInfo,
    /// `[fleet]`: the restart slots the pipeline asks for.
    fleet: Option<Arc<Link>>,
}

impl TickLoop {
    fn new(parts: Parts, notifier: Notifier, fleet: Option<Arc<Link>>) -> TickLoop {
        let info = ConfigInfo {
            file: parts.config_file.clone(),
            ..ConfigInfo::default()
        };
        TickLoop {
            parts,
            notifier,
            ticks_skipped_total: 0,
            info,
            fleet,
        }
    }

    fn pipeline(&self) -> Pipeline {
        Pipeline::new(self.parts.config.clone()).with_fleet(self.fleet.clone())
    }

    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) -> anyhow::Result<()> {
        let mut idle = Some(self.pipeline());
        let mut running: Option<JoinHandle<Tick>> = None;
        let mut pending: Option<Config> = None;
        let mut interval = ticker(self.parts.config.interval);
        let mut pings = self.notifier.watchdog().map(|d| ticker(d / 2));
        info!(
            targets = self.parts.config.targets.len(),
            interval = ?self.parts.config.interval,
            "leakwatch started"
        );
        loop {
            tokio::select! {
                _ = interval.tick() => match idle.take() {
                    Some(p) => running = Some(tokio::task::spawn_blocking(move || tick(p))),
                    None => self.ticks_skipped_total += 1,
                },
                done = wait(&mut running), if running.is_some() => {
                    running = None;
                    match done {
                        Ok((p, statuses, took)) => {
                            if let Some(statuses) = statuses {
                                self.publish(statuses, took, p.fleet_status().cloned());
                            }
                            idle = Some(p);
                        }
                        Err(e) => {
                            // Unreachable in practice (panics are caught in `tick`); without
                            // the state there is nothing to go on with: restart afresh.
                            error!(error = %e, "the tick task failed; starting afresh");
                            idle = Some(self.pipeline());
                        }
                    }
                },
                _ = ping(&mut pings) => {
                    if self.healthy_loop() {
                        self.notifier.notify("WATCHDOG=1");
                    }
                },
                msg = control.recv() => match msg {
                    Some(Control::Reload(c)) => pending = Some(*c),
                    Some(Control::ReloadFailed(why)) => {
                        self.info.reloads_failed += 1;
                        self.info.last_reload_error = Some(why);
                    }
                    Some(Control::Shutdown) | None => break,
                },
            }
            // A reload waits for the running tick: take it only when the pipeline is idle
            // (taking it first would drop a SIGHUP that arrives mid-tick).
            if let Some(p) = idle.as_mut().filter(|_| pending.is_some()) {
                if let Some(new) = pending.take() {
                    if new.interval != self.parts.config.interval {
                        interval = ticker(new.interval);
                    }
                    self.reload(p, new);
                }
            }
        }
        self.notifier.notify("STOPPING=1");
        info!("leakwatch stopping");
        Ok(())
    }

    fn reload(&mut self, pipeline: &mut Pipeline, new: Config) {
        self.notifier.notify("RELOADING=1");
        if new.listen != self.parts.config.listen
            || new.probe_listen != self.parts.config.probe_listen
        {
            warn!(old = %self.parts.config.listen, new = %new.listen, "listen and probe_listen cannot change on reload: restart leakwatch to move them");
        }
        if new.fleet != self.parts.config.fleet {
            warn!("[fleet] changes only on restart: the running coordination keeps its settings");
        }
        let (old_http, new_http) = (&self.parts.config.http, &new.http);
        if new_http.max_connections != old_http.max_connections
            || new_http.header_timeout != old_http.header_timeout
        {
            warn!("http.max_connections and http.header_timeout change only on restart");
        }
        match load_token(&new) {
            Ok(t) => {
                self.parts.token.send_replace(t);
            }
            Err(e) => warn!(error = %e, "token file unreadable: keeping the old token"),
        }
        for change in pipeline.reload(new.clone()) {
            info!("reload: {change}");
        }
        self.parts.config = new;
        self.info.reloads_ok += 1;
        self.info.last_reload_error = None;
        info!("config reloaded");
        self.notifier.notify("READY=1");
    }

    fn publish(&mut self, targets: Vec<TargetStatus>, took: Duration, fleet: Option<FleetStatus>) {
        let prev = self.parts.snapshots.borrow().clone();
        let snap = Snapshot {
            version: prev.version.clone(),
            seq: prev.seq + 1,
            started_unix_ms: prev.started_unix_ms,
            published_unix_ms: unix_ms(),
            published_mono_ms: mono_ms(),
            interval_ms: self.parts.config.interval.as_millis() as u64,
            ticks_total: prev.ticks_total + 1,
            ticks_skipped_total: self.ticks_skipped_total,
            tick_duration_us: took.as_micros() as u64,
            config: self.info.clone(),
            peer_labels: self.parts.config.peer_labels,
            targets,
            fleet,
        };
        let first = snap.ticks_total == 1;
        let status = status_line(&snap);
        self.parts.snapshots.send_replace(Arc::new(snap));
        if first {
            self.notifier.notify(&format!("READY=1\nSTATUS={status}"));
        } else {
            self.notifier.notify(&format!("STATUS={status}"));
        }
    }

    /// Ticks keep completing: a tick has published (so `READY=1` went first) and the last
    /// publication is not stale, by the same measure `/livez` uses.
    fn healthy_loop(&self) -> bool {
        let snap = self.parts.snapshots.borrow();
        snap.seq > 0 && !snap.is_stale(mono_ms())
    }
}

/// One tick on the blocking thread; a panic is caught and logged, and the tick publishes
/// nothing (the snapshot goes stale, which fails open).
fn tick(mut pipeline: Pipeline) -> Tick {
    lower_this_threads_priority();
    let started = Instant::now();
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| pipeline.tick()));
    if r.is_err() {
        error!("a tick panicked; its results are dropped");
    }
    (pipeline, r.ok(), started.elapsed())
}

/// How much nicer than the HTTP thread the threads that collect run: on a busy CPU a probe
/// is answered before a long poll of a big fd table gets on.
pub const COLLECTOR_NICE_OFFSET: i32 = 10;

thread_local! {
    static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Once per blocking thread, its nice raised by the offset (19 at most): on Linux
/// `setpriority(PRIO_PROCESS, tid)` sets one thread's. Raising nice needs no privilege; a
/// failure only leaves the thread as it was.
fn lower_this_threads_priority() {
    if LOWERED.with(|l| l.replace(true)) {
        return;
    }
    use rustix::process::{getpriority_process, setpriority_process};
    // rustix makes the raw system call, whose answer (20 - nice) cannot be mistaken for an
    // error the way libc's -1 can.
    let tid = Some(rustix::thread::gettid());
    let Ok(now) = getpriority_process(tid) else {
        return;
    };
    let nicer = (now + COLLECTOR_NICE_OFFSET).min(19);
    if let Err(e) = setpriority_process(tid, nicer) {
        let e = std::io::Error::from(e);
        debug!(error = %e, "could not lower the collector's priority");
    }
}

async fn wait(running: &mut Option<JoinHandle<Tick>>) -> Result<Tick, tokio::task::JoinError> {
    match running.as_mut() {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

async fn ping(pings: &mut Option<tokio::time::Interval>) {
    match pings.as_mut() {
        Some(p) => {
            p.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn ticker(every: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval(every.max(Duration::from_millis(10)));
    i.set_missed_tick_behavior(MissedTickBehavior::Skip);
    i
}

/// `STATUS=` for systemctl status: `2 target(s), healthy` / `unhealthy: app`, and what
/// observe mode holds at 200 (`; observe: would fail: worker`).
fn status_line(s: &Snapshot) -> String {
    let names = |f: &dyn Fn(&TargetStatus) -> bool| -> Vec<&str> {
        s.targets
            .iter()
            .filter(|t| f(t))
            .map(|t| t.name.as_str())
            .collect()
    };
    let bad = names(&|t| !t.verdict().healthy);
    let mut line = if bad.is_empty() {
        format!("{} target(s), healthy", s.targets.len())
    } else {
        format!("unhealthy: {}", bad.join(", "))
    };
    let would = names(&|t| t.verdict().would_fail());
    if !would.is_empty() {
        line += &format!("; observe: would fail: {}", would.join(", "));
    }
    line
}

/// What HTTP answers before the first tick.
pub fn initial_snapshot(config: &Config, file: Option<String>) -> Snapshot {
    let now = mono_ms();
    Snapshot {
        version: env!("CARGO_PKG_VERSION").to_string(),
        seq: 0,
        started_unix_ms: unix_ms(),
        published_unix_ms: unix_ms(),
        published_mono_ms: now,
        interval_ms: config.interval.as_millis() as u64,
        ticks_total: 0,
        ticks_skipped_total: 0,
        tick_duration_us: 0,
        config: ConfigInfo {
            file,
            ..ConfigInfo::default()
        },
        peer_labels: config.peer_labels,
        targets: config
            .targets
            .iter()
            .map(|t| TargetStatus {
                name: t.name.clone(),
                selector: t.selector.to_string(),
                found: false,
                target: None,
                missing_reason: Some("not sampled yet".into()),
                watching_since_unix_ms: None,
                restarts_total: 0,
                sample: None,
                judged: crate::judge::Judged {
                    series: Vec::new(),
                    rules: Vec::new(),
                    budget: crate::judge::Budget::default(),
                    verdict: crate::judge::Verdict::healthy(vec!["not sampled yet".into()]),
                },
                collector_errors_total: Vec::new(),
                poll_duration_seconds: None,
                actions: crate::actions::ActionsStatus::default(),
                mode: t.mode,
                would_fail_flips_total: 0,
            })
            .collect(),
        fleet: None,
    }
}

#[cfg(test)]
mod status_tests {
    use super::status_line;
    use crate::test_support::metrics::example_snapshot;

    #[test]
    fn the_status_line_names_what_fails_and_what_would() {
        let mut s = example_snapshot();
        assert_eq!(status_line(&s), "unhealthy: app");
        let app = &mut s.targets[0];
        app.judged.verdict = std::mem::take(&mut app.judged.verdict).observed();
        assert_eq!(
            status_line(&s),
            "2 target(s), healthy; observe: would fail: app"
        );
    }
}
