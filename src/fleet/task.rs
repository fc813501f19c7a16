//! The fleet's driver on the daemon's runtime: the tick says what the targets need
//! ([`Link::ask`], from its blocking thread), this task steps the [`Slots`] against the API
//! server (every second, and at once when the demand changes), logs each acquire, release
//! and override, and publishes the [`FleetStatus`] the next tick gates on. At shutdown it
//! gives its slot back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::api::{ApiError, Lease, LeaseApi};
use super::kube::KubeLeases;
use super::slots::Event;
use super::{identity, Demand, FleetConfig, FleetStatus, Now, Slots};
use crate::clock::{mono_ms, unix_ms};
use crate::units::duration_ms;

/// How often the slots are stepped when nothing changes.
const STEP_EVERY: Duration = Duration::from_secs(1);
/// How often a client that could not be built (no kubeconfig, no service account) is tried
/// again.
const RECONNECT_EVERY: Duration = Duration::from_secs(30);

/// The tick's side of the fleet: what it asks, and the last status.
#[derive(Debug)]
pub struct Link {
    demand: watch::Sender<Demand>,
    status: watch::Receiver<Option<FleetStatus>>,
}

impl Link {
    /// Say what the targets need now; returns the last published status (`None` before the
    /// task's first step).
    pub fn ask(&self, d: Demand) -> Option<FleetStatus> {
        self.demand.send_if_modified(|old| {
            let changed = *old != d;
            *old = d;
            changed
        });
        self.status.borrow().clone()
    }
}

/// The running task: drop it or call [`Fleet::stop`] to give the slot back.
#[derive(Debug)]
pub struct Fleet {
    pub link: Arc<Link>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    /// Start the driver on the current tokio runtime.
    pub fn spawn(cfg: FleetConfig) -> Fleet {
        let (demand_tx, demand_rx) = watch::channel(Demand::default());
        let (status_tx, status_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(cfg, demand_rx, status_tx, stop_rx));
        Fleet {
            link: Arc::new(Link {
                demand: demand_tx,
                status: status_rx,
            }),
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Give the slot back (if held) and end the task; bounded by the API timeout.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// The API as the task has it: a client, or why there is none (every call fails with it).
enum Backend {
    Kube(Box<KubeLeases>),
    Broken(String),
}

impl LeaseApi for Backend {
    async fn get(&self, name: &str) -> Result<Lease, ApiError> {
        match self {
            Backend::Kube(k) => k.get(name).await,
            Backend::Broken(why) => Err(ApiError::failed("config", why.clone())),
        }
    }

    async fn replace(&self, name: &str, lease: &Lease) -> Result<Lease, ApiError> {
        match self {
            Backend::Kube(k) => k.replace(name, lease).await,
            Backend::Broken(why) => Err(ApiError::failed("config", why.clone())),
        }
    }
}

/// Times every request; the slots read no clock.
struct Timed<'a> {
    api: &'a Backend,
    took: Mutex<Vec<f64>>,
}

impl Timed<'_> {
    fn record(&self, started: Instant) {
        if let Ok(mut t) = self.took.lock() {
            t.push(started.elapsed().as_secs_f64());
        }
    }
}

impl LeaseApi for Timed<'_> {
    async fn get(&self, name: &str) -> Result<Lease, ApiError> {
        let t = Instant::now();
        let r = self.api.get(name).await;
        self.record(t);
        r
    }

    async fn replace(&self, name: &str, lease: &Lease) -> Result<Lease, ApiError> {
        let t = Instant::now();
        let r = self.api.replace(name, lease).await;
        self.record(t);
        r
    }
}

async fn connect(cfg: &FleetConfig) -> (Backend, Option<String>) {
    match KubeLeases::connect(cfg).await {
        Ok((k, ns)) => (Backend::Kube(Box::new(k)), Some(ns)),
        Err(why) => {
            warn!(error = %why, "fleet: no Kubernetes client; restarts fall back to local decisions, staggered");
            (Backend::Broken(why), None)
        }
    }
}

fn now() -> Now {
    Now {
        mono_ms: mono_ms(),
        unix_ms: unix_ms(),
    }
}

async fn run(
    cfg: FleetConfig,
    mut demand: watch::Receiver<Demand>,
    status: watch::Sender<Option<FleetStatus>>,
    mut stop: oneshot::Receiver<()>,
) {
    let id = identity(cfg.identity.as_deref());
    let (mut backend, ns) = connect(&cfg).await;
    let mut connected_at = Instant::now();
    let namespace = ns
        .or_else(|| cfg.namespace.clone())
        .unwrap_or_else(|| "?".into());
    info!(group = %cfg.group, slots = cfg.max_concurrent, identity = %id, namespace = %namespace, "fleet: restarts coordinated through Leases leakwatch-{}-slot-*", cfg.group);
    let mut slots = Slots::new(cfg.clone(), id, namespace);
    let mut ticker = tokio::time::interval(STEP_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {},
            r = demand.changed() => if r.is_err() { break },
            _ = &mut stop => break,
        }
        if matches!(backend, Backend::Broken(_)) && connected_at.elapsed() >= RECONNECT_EVERY {
            backend = connect(&cfg).await.0;
            connected_at = Instant::now();
        }
        let d = demand.borrow_and_update().clone();
        step(&mut slots, &backend, &d, &status).await;
    }
    let timed = Timed {
        api: &backend,
        took: Mutex::new(Vec::new()),
    };
    let bound = cfg.api_timeout * 3;
    if tokio::time::timeout(bound, slots.shutdown(&timed, now()))
        .await
        .is_err()
    {
        warn!("fleet: the slot could not be given back in time; it expires by itself");
    }
    log_events(&mut slots);
    status.send_replace(Some(slots.status(now())));
}

async fn step(
    slots: &mut Slots,
    backend: &Backend,
    d: &Demand,
    status: &watch::Sender<Option<FleetStatus>>,
) {
    let timed = Timed {
        api: backend,
        took: Mutex::new(Vec::new()),
    };
    slots.step(&timed, now(), d).await;
    for s in timed.took.into_inner().unwrap_or_default() {
        slots.observe_latency(s);
    }
    log_events(slots);
    status.send_replace(Some(slots.status(now())));
}

fn log_events(slots: &mut Slots) {
    for e in slots.take_events() {
        match e {
            Event::Acquired { lease, waited_ms } => {
                info!(lease = %lease, waited = %secs(waited_ms), "fleet: restart slot acquired: /healthz may fail now");
            }
            Event::Released {
                lease,
                reason,
                held_ms,
            } => {
                info!(lease = %lease, reason, held = %secs(held_ms), "fleet: restart slot released");
            }
            Event::Lost { lease, by } => {
                warn!(lease = %lease, by = %by, "fleet: restart slot taken by another replica (renewals failed for a lease duration); the restart goes on");
            }
            Event::Override {
                reason,
                waited_ms,
                tte_s,
            } => {
                let tte = tte_s.map_or("unknown".into(), |t| format!("{t:.0}s"));
                warn!(reason = reason.as_str(), waited = %secs(waited_ms), time_to_exhaustion = %tte, "fleet: restarting without a slot");
            }
            Event::Fallback { error, failing_ms } => {
                warn!(error = %error, failing_for = %secs(failing_ms), "fleet: the Kubernetes API failed every request for a lease duration: local fallback, staggered per pod (no probe fails for this)");
            }
            Event::Recovered => info!("fleet: the Kubernetes API answers again: coordinated"),
        }
    }
}

/// A duration for the log, in whole seconds (`17s`, `1m05s`).
fn secs(ms: u64) -> String {
    duration_ms(ms / 1000 * 1000)
}
