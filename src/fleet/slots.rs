//! The slot state machine of one daemon. Pure: every time comes from the caller ([`Now`]),
//! every API call goes through [`LeaseApi`]. [`Slots::step`] is called every second or so
//! and whenever the [`Demand`] changes; it does at most one round of requests.
//!
//! - **Take** (the lessons of client-go's leader election and kured): read a slot; it is
//!   free when it has no holder, is this pod's own, or has not changed for its
//!   `leaseDurationSeconds` *as observed on this pod's monotonic clock* since this pod first
//!   saw that version (clocks of other machines are never compared). Replace it with the
//!   resourceVersion read: a 409 means another replica won, try the next slot.
//! - **Hold** through the kill and the restart, renewing every `renew_every`, and give it
//!   back when the targets have been running and healthy for `healthy_for` (a slot turned
//!   over at the kill would let the whole fleet through), at `max_hold`, or at shutdown.
//! - **Go anyway** near exhaustion (`restart_cost` + [`DEADLINE_MARGIN`]) or after
//!   `max_wait`: waiting past those buys nothing.
//! - **Fail open**: an API that has failed every request for a lease duration (the time a
//!   holder that cannot renew keeps its slot) switches to local fallback, which goes after
//!   a stagger (a hash of the identity modulo `fallback_spread`, at most half the time to
//!   exhaustion) counted from the fallback, so an API outage does not restart the fleet at
//!   once either: not the replicas that were already waiting when it began, and not on one
//!   slow request of a loaded API server. A holder keeps its decision whatever the API does.

use serde::Serialize;

use super::api::{ApiError, Lease, LeaseApi};
use super::status::{ApiView, Deferred, FleetStatus, GoReason, HeldView, Mode, SlotView};
use super::{stable_hash, FleetConfig, DEADLINE_MARGIN};

/// Both clocks at one instant: monotonic for every duration, wall only to write and show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono_ms: u64,
    pub unix_ms: u64,
}

/// What the targets need, from this tick's judging.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    /// A target's judge found it unhealthy (a rule failing, its budget not spent): a
    /// restart is due.
    pub restart_due: bool,
    /// Every target was sampled running and judged healthy.
    pub settled: bool,
    /// The least time to exhaustion of the failing series, seconds.
    pub tte_s: Option<f64>,
}

/// What happened, for the log (drained by the driver).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Event {
    Acquired {
        lease: String,
        waited_ms: u64,
    },
    Released {
        lease: String,
        reason: &'static str,
        held_ms: u64,
    },
    /// The slot was taken by `by` while this pod held it (it could not renew in time).
    Lost {
        lease: String,
        by: String,
    },
    Override {
        reason: GoReason,
        waited_ms: u64,
        tte_s: Option<f64>,
    },
    /// The API failed every request for a lease duration: local fallback.
    Fallback {
        error: String,
        failing_ms: u64,
    },
    /// The API answers again.
    Recovered,
}

/// A slot as last read, and since when (this pod's clock) that version is seen.
#[derive(Debug, Clone)]
struct Seen {
    lease: Lease,
    since_mono_ms: u64,
}

#[derive(Debug, Clone)]
struct Held {
    slot: u32,
    /// The Lease as this pod last wrote it.
    lease: Lease,
    acquired: Now,
    renewed_mono_ms: u64,
}

/// The longest holder identity shown; Lease contents are untrusted.
const MAX_HOLDER_CHARS: usize = 63;
/// Bounds on a Lease's `leaseDurationSeconds` as read.
const DURATION_BOUNDS_S: (i64, i64) = (1, 3600);

/// One daemon's slots.
#[derive(Debug)]
pub struct Slots {
    cfg: FleetConfig,
    identity: String,
    namespace: String,
    /// The order slots are tried in: rotated by the identity's hash, so replicas do not all
    /// race for slot 0.
    order: Vec<u32>,
    seen: Vec<Option<Seen>>,
    held: Option<Held>,
    /// Since when a restart is due (and not held).
    due_since: Option<Now>,
    settled_since_mono_ms: Option<u64>,
    go: Option<GoReason>,
    mode: Mode,
    /// Since when every API request failed (none since succeeded).
    failing_since_mono_ms: Option<u64>,
    /// A slot given back whose Lease could not be cleared (the API failed), and since
    /// when: tried again at each poll until it is cleared, taken by another or expired.
    unreleased: Option<(u32, u64)>,
    /// Since when this pod is in local fallback: its stagger counts from here or from
    /// `due_since`, whichever is later.
    fallback_since: Option<Now>,
    api: ApiView,
    next_poll_mono_ms: u64,
    /// A counter for the poll's jitter (deterministic: the hash and this).
    polls: u64,
    acquire_total: std::collections::BTreeMap<String, u64>,
    override_total: std::collections::BTreeMap<String, u64>,
    release_total: std::collections::BTreeMap<String, u64>,
    events: Vec<Event>,
    last_tte_s: Option<f64>,
}

impl Slots {
    pub fn new(cfg: FleetConfig, identity: String, namespace: String) -> Slots {
        let k = cfg.max_concurrent.max(1);
        let first = (stable_hash(&identity) % u64::from(k)) as u32;
        let order = (0..k).map(|i| (first + i) % k).collect();
        Slots {
            seen: vec![None; k as usize],
            cfg,
            identity,
            namespace,
            order,
            held: None,
            due_since: None,
            settled_since_mono_ms: None,
            go: None,
            mode: Mode::Coordinated,
            failing_since_mono_ms: None,
            unreleased: None,
            fallback_since: None,
            api: ApiView {
                up: true,
                ..ApiView::default()
            },
            next_poll_mono_ms: 0,
            polls: 0,
            acquire_total: Default::default(),
            override_total: Default::default(),
            release_total: Default::default(),
            events: Vec::new(),
            last_tte_s: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Record one API request's latency (the driver times them; this machine reads no
    /// clock).
    pub fn observe_latency(&mut self, seconds: f64) {
        self.api.latency.observe(seconds);
    }

    /// One step at `now` for `demand`.
    pub async fn step<A: LeaseApi>(&mut self, api: &A, now: Now, demand: &Demand) {
        self.last_tte_s = demand.tte_s;
        self.track(now, demand);
        if let Some(reason) = self.release_due(now) {
            self.release(api, now, reason).await;
        } else if self.held.is_some() {
            let renew_ms = ms(self.cfg.renew_every);
            if let Some(h) = self.held.as_ref() {
                if now.mono_ms.saturating_sub(h.renewed_mono_ms) >= renew_ms {
                    self.renew(api, now).await;
                }
            }
        } else if demand.restart_due {
            // Even when going anyway: a slot taken tells the others, and is given back only
            // once the restarted target is healthy.
            if now.mono_ms >= self.next_poll_mono_ms {
                self.try_acquire(api, now).await;
            }
            self.check_override(now, demand);
        } else if now.mono_ms >= self.next_poll_mono_ms {
            match self.unreleased.take() {
                Some((slot, since))
                    if now.mono_ms.saturating_sub(since) < ms(self.cfg.lease_duration) =>
                {
                    self.clear_holder(api, now, slot, since).await;
                }
                _ => self.look(api, now).await,
            }
        }
    }

    /// Give the slot back (leakwatch stops).
    pub async fn shutdown<A: LeaseApi>(&mut self, api: &A, now: Now) {
        if self.held.is_some() {
            self.release(api, now, "shutdown").await;
        }
    }

    fn track(&mut self, now: Now, d: &Demand) {
        if d.restart_due {
            if self.due_since.is_none() {
                self.due_since = Some(now);
                // Ask at once.
                self.next_poll_mono_ms = now.mono_ms;
            }
            self.settled_since_mono_ms = None;
            return;
        }
        self.due_since = None;
        if self.held.is_none() {
            self.go = None;
        }
        if d.settled {
            self.settled_since_mono_ms.get_or_insert(now.mono_ms);
        } else {
            self.settled_since_mono_ms = None;
        }
    }

    fn release_due(&self, now: Now) -> Option<&'static str> {
        let h = self.held.as_ref()?;
        if now.mono_ms.saturating_sub(h.acquired.mono_ms) >= ms(self.cfg.max_hold) {
            return Some("max_hold");
        }
        let settled = self
            .settled_since_mono_ms
            .is_some_and(|s| s >= h.acquired.mono_ms || self.due_since.is_none());
        let healthy_ms = self
            .settled_since_mono_ms
            .map_or(0, |s| now.mono_ms.saturating_sub(s));
        (settled && healthy_ms >= ms(self.cfg.healthy_for)).then_some("healthy")
    }

    async fn try_acquire<A: LeaseApi>(&mut self, api: &A, now: Now) {
        self.next_poll_mono_ms = now.mono_ms + self.jittered(ms(self.cfg.renew_every));
        let mut conflicts = 0;
        for i in self.order.clone() {
            let name = self.cfg.lease_name(i);
            let lease = match api.get(&name).await {
                Ok(l) => l,
                Err(e) => return self.api_failed(now, e, true),
            };
            self.api_ok(now);
            self.observe(i, lease, now);
            if !self.is_free(i, now) {
                continue;
            }
            let Some(read) = self.seen[i as usize].as_ref().map(|s| s.lease.clone()) else {
                continue;
            };
            let mine = self.taken(read, now);
            match api.replace(&name, &mine).await {
                Ok(written) => {
                    self.api_ok(now);
                    let waited_ms = self
                        .due_since
                        .map_or(0, |d| now.mono_ms.saturating_sub(d.mono_ms));
                    self.count_acquire("acquired");
                    self.events.push(Event::Acquired {
                        lease: name,
                        waited_ms,
                    });
                    self.observe(i, written.clone(), now);
                    self.held = Some(Held {
                        slot: i,
                        lease: written,
                        acquired: now,
                        renewed_mono_ms: now.mono_ms,
                    });
                    self.go = Some(GoReason::Slot);
                    self.unreleased = None;
                    return;
                }
                Err(ApiError::Conflict) => {
                    self.api_ok(now);
                    conflicts += 1;
                }
                Err(e) => return self.api_failed(now, e, true),
            }
        }
        self.count_acquire(if conflicts > 0 { "conflict" } else { "busy" });
        // Look again when the first unchanged slot would expire, if that is sooner: a dead
        // holder's slot is taken within its duration plus one poll.
        let expiry = self
            .seen
            .iter()
            .flatten()
            .map(|s| s.since_mono_ms + duration_ms(&s.lease, &self.cfg))
            .min();
        if let Some(e) = expiry.filter(|e| *e > now.mono_ms) {
            self.next_poll_mono_ms = self.next_poll_mono_ms.min(e);
        }
    }

    /// `read` taken by this pod at `now`.
    fn taken(&self, read: Lease, now: Now) -> Lease {
        let changed_hands = read.holder() != Some(self.identity.as_str());
        Lease {
            holder: Some(self.identity.clone()),
            duration_s: Some(self.cfg.lease_duration.as_secs().max(1) as i64),
            acquire_unix_ms: Some(now.unix_ms as i64),
            renew_unix_ms: Some(now.unix_ms as i64),
            transitions: Some(read.transitions.unwrap_or(0).max(0) + i64::from(changed_hands)),
            ..read
        }
    }

    async fn renew<A: LeaseApi>(&mut self, api: &A, now: Now) {
        let Some((slot, mut lease)) = self.held.as_mut().map(|h| {
            h.renewed_mono_ms = now.mono_ms;
            (h.slot, h.lease.clone())
        }) else {
            return;
        };
        let name = self.cfg.lease_name(slot);
        lease.renew_unix_ms = Some(now.unix_ms as i64);
        lease.holder = Some(self.identity.clone());
        let result = match api.replace(&name, &lease).await {
            Err(ApiError::Conflict) => {
                // Written by someone else since: renew on top of it if it is still ours.
                match api.get(&name).await {
                    Ok(current) if current.holder() == Some(self.identity.as_str()) => {
                        let again = Lease {
                            renew_unix_ms: Some(now.unix_ms as i64),
                            ..current
                        };
                        api.replace(&name, &again).await
                    }
                    Ok(current) => {
                        self.api_ok(now);
                        return self.lost(slot, current, now);
                    }
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        match result {
            Ok(written) => {
                self.api_ok(now);
                if let Some(h) = self.held.as_mut() {
                    h.lease = written.clone();
                }
                self.observe(slot, written, now);
            }
            // The holder keeps its decision: the slot is its own until it expires.
            Err(e) => self.api_failed(now, e, false),
        }
    }

    fn lost(&mut self, slot: u32, current: Lease, now: Now) {
        let by = current.holder().map(sanitize).unwrap_or_default();
        self.observe(slot, current, now);
        self.events.push(Event::Lost {
            lease: self.cfg.lease_name(slot),
            by,
        });
        *self.release_total.entry("lost".into()).or_default() += 1;
        self.held = None;
        // The decision is kept while the restart is due: the run of 503 must not break.
    }

    async fn release<A: LeaseApi>(&mut self, api: &A, now: Now, reason: &'static str) {
        let Some(h) = self.held.take() else { return };
        let name = self.cfg.lease_name(h.slot);
        let held_ms = now.mono_ms.saturating_sub(h.acquired.mono_ms);
        self.events.push(Event::Released {
            lease: name.clone(),
            reason,
            held_ms,
        });
        *self.release_total.entry(reason.into()).or_default() += 1;
        if self.due_since.is_none() {
            self.go = None;
        } else if reason == "max_hold" {
            // Held that long and still due: the restart did not happen or did not help.
            // The slot goes to the others (this pod asks again only after a lease duration,
            // longer than their poll); it queues again.
            self.go = None;
            self.due_since = Some(now);
            self.next_poll_mono_ms = now.mono_ms + ms(self.cfg.lease_duration);
        }
        self.clear_holder(api, now, h.slot, now.mono_ms).await;
    }

    /// Clear the holder of `slot` if the Lease is still this pod's. On an API error it is
    /// tried again at the next poll (a renew period on), until a lease duration after the
    /// release (`since`), when it has expired for every replica anyway: meanwhile the
    /// Lease names a holder that no longer restarts, and waiters would wait out its
    /// duration.
    async fn clear_holder<A: LeaseApi>(&mut self, api: &A, now: Now, slot: u32, since: u64) {
        let name = self.cfg.lease_name(slot);
        for _ in 0..2 {
            let current = match api.get(&name).await {
                Ok(c) => c,
                Err(e) => return self.clear_failed(now, e, slot, since),
            };
            self.api_ok(now);
            if current.holder() != Some(self.identity.as_str()) {
                self.observe(slot, current, now);
                return;
            }
            let free = Lease {
                holder: None,
                renew_unix_ms: Some(now.unix_ms as i64),
                ..current
            };
            match api.replace(&name, &free).await {
                Ok(written) => {
                    self.api_ok(now);
                    self.observe(slot, written, now);
                    return;
                }
                Err(ApiError::Conflict) => continue,
                Err(e) => return self.clear_failed(now, e, slot, since),
            }
        }
    }

    /// Never sooner than a poll already set: a pod giving back at `max_hold` asks again only
    /// a lease duration on.
    fn clear_failed(&mut self, now: Now, e: ApiError, slot: u32, since: u64) {
        self.unreleased = Some((slot, since));
        let retry = now.mono_ms + self.jittered(ms(self.cfg.renew_every));
        self.next_poll_mono_ms = self.next_poll_mono_ms.max(retry);
        self.api_failed(now, e, false);
    }

    /// Nothing asked for: read the slots now and then, for /status and to find API
    /// trouble before it matters.
    async fn look<A: LeaseApi>(&mut self, api: &A, now: Now) {
        self.next_poll_mono_ms = now.mono_ms + self.jittered(ms(self.cfg.idle_check));
        for i in 0..self.cfg.max_concurrent.max(1) {
            match api.get(&self.cfg.lease_name(i)).await {
                Ok(l) => {
                    self.api_ok(now);
                    self.observe(i, l, now);
                }
                Err(e) => return self.api_failed(now, e, false),
            }
        }
    }

    fn check_override(&mut self, now: Now, d: &Demand) {
        if self.go.is_some() {
            return;
        }
        let Some(since) = self.due_since else { return };
        let waited_ms = now.mono_ms.saturating_sub(since.mono_ms);
        let staggered = self.stagger_from().is_some_and(|from| {
            now.mono_ms.saturating_sub(from.mono_ms) >= self.stagger_ms(d.tte_s)
        });
        let reason = if d.tte_s.is_some_and(|t| t <= self.deadline_tte_s()) {
            Some(GoReason::Deadline)
        } else if waited_ms >= ms(self.cfg.max_wait) {
            Some(GoReason::MaxWait)
        } else if staggered {
            Some(GoReason::FallbackStagger)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.go = Some(reason);
            *self
                .override_total
                .entry(reason.as_str().into())
                .or_default() += 1;
            self.events.push(Event::Override {
                reason,
                waited_ms,
                tte_s: d.tte_s,
            });
        }
    }

    /// In local fallback (`fallback_since` is set exactly then) with a restart due: the
    /// stagger counts from the later of the two, so the replicas that were waiting when an
    /// outage began go spread, not at once.
    fn stagger_from(&self) -> Option<Now> {
        let due = self.due_since?;
        let fallback = self.fallback_since?;
        Some(if fallback.mono_ms > due.mono_ms {
            fallback
        } else {
            due
        })
    }

    /// Going anyway when the time to exhaustion is down to this, seconds.
    fn deadline_tte_s(&self) -> f64 {
        (self.cfg.restart_cost + DEADLINE_MARGIN).as_secs_f64()
    }

    /// This pod's stagger in fallback: its hash modulo the spread, the spread at most half
    /// the time to exhaustion.
    pub fn stagger_ms(&self, tte_s: Option<f64>) -> u64 {
        let mut spread = ms(self.cfg.fallback_spread);
        if let Some(t) = tte_s.filter(|t| t.is_finite() && *t >= 0.0) {
            spread = spread.min((t * 500.0) as u64);
        }
        stable_hash(&self.identity) % spread.max(1)
    }

    fn is_free(&self, i: u32, now: Now) -> bool {
        let Some(s) = self.seen[i as usize].as_ref() else {
            return false;
        };
        match s.lease.holder() {
            None => true,
            Some(h) if h == self.identity => true,
            Some(_) => {
                now.mono_ms.saturating_sub(s.since_mono_ms) >= duration_ms(&s.lease, &self.cfg)
            }
        }
    }

    /// Note the slot as read; a new version restarts the observation clock.
    fn observe(&mut self, i: u32, lease: Lease, now: Now) {
        let slot = &mut self.seen[i as usize];
        match slot {
            Some(s) if s.lease.resource_version == lease.resource_version => s.lease = lease,
            _ => {
                *slot = Some(Seen {
                    lease,
                    since_mono_ms: now.mono_ms,
                })
            }
        }
    }

    fn api_ok(&mut self, now: Now) {
        self.api.requests_total += 1;
        if self.mode == Mode::LocalFallback {
            self.events.push(Event::Recovered);
        }
        self.api.up = true;
        self.api.last_ok_unix_ms = Some(now.unix_ms);
        self.mode = Mode::Coordinated;
        self.failing_since_mono_ms = None;
        self.fallback_since = None;
    }

    /// A failed request: the API is down (`api.up` false) at once, but the pod falls back
    /// only once every request has failed for a lease duration. Until then it waits as in
    /// coordinated mode (the slots it saw are as good as they were: a holder that cannot
    /// renew keeps its slot that long too), so one slow request of a loaded API server
    /// lets no waiting replica through.
    fn api_failed(&mut self, now: Now, e: ApiError, acquiring: bool) {
        self.api.requests_total += 1;
        *self.api.errors_total.entry(e.kind().into()).or_default() += 1;
        if acquiring {
            self.count_acquire("error");
        }
        let message = e.to_string();
        let since = *self.failing_since_mono_ms.get_or_insert(now.mono_ms);
        let failing_for = now.mono_ms.saturating_sub(since);
        if self.mode != Mode::LocalFallback && failing_for >= ms(self.cfg.lease_duration) {
            self.events.push(Event::Fallback {
                error: message.clone(),
                failing_ms: failing_for,
            });
            self.mode = Mode::LocalFallback;
            self.fallback_since = Some(now);
        }
        self.api.up = false;
        self.api.last_error = Some(message);
    }

    fn count_acquire(&mut self, result: &str) {
        *self.acquire_total.entry(result.into()).or_default() += 1;
    }

    /// `base` ± 30 %, deterministic per identity and poll.
    fn jittered(&mut self, base: u64) -> u64 {
        self.polls += 1;
        let h = stable_hash(&format!("{}/{}", self.identity, self.polls));
        let span = base * 6 / 10;
        base * 7 / 10 + if span == 0 { 0 } else { h % span }
    }

    /// The published state at `now`.
    pub fn status(&self, now: Now) -> FleetStatus {
        let slots = (0..self.cfg.max_concurrent.max(1))
            .map(|i| {
                let s = self.seen[i as usize].as_ref();
                SlotView {
                    lease: self.cfg.lease_name(i),
                    holder: s.and_then(|s| s.lease.holder()).map(sanitize),
                    renew_unix_ms: s.and_then(|s| s.lease.renew_unix_ms),
                    unchanged_s: s.map_or(0.0, |s| {
                        now.mono_ms.saturating_sub(s.since_mono_ms) as f64 / 1000.0
                    }),
                    duration_s: s.map_or(self.cfg.lease_duration.as_secs(), |s| {
                        duration_ms(&s.lease, &self.cfg) / 1000
                    }),
                }
            })
            .collect();
        let held = self.held.as_ref().map(|h| HeldView {
            lease: self.cfg.lease_name(h.slot),
            since_unix_ms: h.acquired.unix_ms,
            held_s: now.mono_ms.saturating_sub(h.acquired.mono_ms) as f64 / 1000.0,
        });
        FleetStatus {
            group: self.cfg.group.clone(),
            namespace: self.namespace.clone(),
            identity: self.identity.clone(),
            mode: self.mode,
            slots_total: self.cfg.max_concurrent.max(1),
            slots,
            held,
            go: self.go,
            deferred: self.deferred(now),
            api: self.api.clone(),
            acquire_total: self.acquire_total.clone(),
            override_total: self.override_total.clone(),
            release_total: self.release_total.clone(),
        }
    }

    fn deferred(&self, now: Now) -> Option<Deferred> {
        let since = self.due_since.filter(|_| self.go.is_none())?;
        let waited_ms = now.mono_ms.saturating_sub(since.mono_ms);
        let mut at = (since.unix_ms + ms(self.cfg.max_wait), GoReason::MaxWait);
        if let Some(from) = self.stagger_from() {
            let stagger = from.unix_ms + self.stagger_ms(self.last_tte_s);
            at = at.min((stagger, GoReason::FallbackStagger));
        }
        Some(Deferred {
            since_unix_ms: since.unix_ms,
            waited_s: waited_ms as f64 / 1000.0,
            override_at_unix_ms: Some(at.0),
            override_reason: Some(at.1),
            deadline_tte_s: self.deadline_tte_s(),
        })
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A Lease's duration as read, bounded; ours when it has none.
fn duration_ms(l: &Lease, cfg: &FleetConfig) -> u64 {
    let (lo, hi) = DURATION_BOUNDS_S;
    l.duration_s
        .map_or(cfg.lease_duration.as_secs() as i64, |d| d.clamp(lo, hi))
        .max(1) as u64
        * 1000
}

/// A holder identity fit to show: printable, at most [`MAX_HOLDER_CHARS`] characters.
pub fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_HOLDER_CHARS)
        .collect();
    if s.chars().count() > MAX_HOLDER_CHARS {
        out.push('…');
    }
    out
}
