//! Who holds a listener's connection slots, so that a new client is never kept waiting.
//!
//! A listener serves at most `max` connections. A connection past the cap is still
//! accepted at once; it takes the slot of the connection that has made no progress for the
//! longest (progress: a whole request head received). That connection is an attacker's
//! slow header, or a client that stopped reading its answer; a probe sends its whole
//! request at once and is answered within milliseconds of being accepted, so it is among
//! the youngest while it needs its slot. Waiting in the kernel's accept queue for a slot
//! to free (the old way) let anyone who opened enough slow connections fail the kubelet's
//! probe.
//!
//! A cap per source address was measured and left out: every legitimate client (the
//! kubelet, Prometheus, a person) sends its request at once, so the stalest connections
//! are an attacker's whatever their number, and a per-source cap would only make one
//! source's connections churn through the accept queue sooner.
//!
//! The connections are kept in order of progress: admitting, evicting and recording
//! progress are each O(log n) under one lock.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

struct Entry {
    peer: SocketAddr,
    /// Fired to make the connection's task drop it.
    evict: oneshot::Sender<()>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// By (last progress, id): the first is the stalest. Progress is when the connection
    /// was accepted or last received a whole request head.
    by_progress: BTreeMap<(Instant, u64), Entry>,
    /// Each held connection's last progress: its key in `by_progress`.
    progress_of: HashMap<u64, Instant>,
    evicted_total: u64,
}

impl Inner {
    fn insert(&mut self, id: u64, progress: Instant, e: Entry) {
        self.progress_of.insert(id, progress);
        self.by_progress.insert((progress, id), e);
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let progress = self.progress_of.remove(&id)?;
        self.by_progress.remove(&(progress, id))
    }

    /// Takes out the connection that has made no progress for the longest.
    fn pop_stalest(&mut self) -> Option<Entry> {
        let ((_, id), e) = self.by_progress.pop_first()?;
        self.progress_of.remove(&id);
        Some(e)
    }

    fn len(&self) -> usize {
        self.progress_of.len()
    }
}

/// One listener's slots.
pub(super) struct Table {
    max: usize,
    inner: Mutex<Inner>,
}

/// A connection's hold on its slot, released on drop.
pub(super) struct Slot {
    table: Arc<Table>,
    id: u64,
}

impl Table {
    pub(super) fn new(max: usize) -> Arc<Table> {
        Arc::new(Table {
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the counts consistent (every update is a
        // single step): carry on rather than take the server down.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the connection from `peer` a slot, evicting the stalest connection at the
    /// cap; the peer it evicted, if any. The receiver fires if this connection is evicted
    /// in turn.
    pub(super) fn admit(
        self: &Arc<Table>,
        peer: SocketAddr,
        now: Instant,
    ) -> (Slot, oneshot::Receiver<()>, Option<SocketAddr>) {
        let mut inner = self.lock();
        let mut evicted_peer = None;
        if inner.len() >= self.max {
            if let Some(e) = inner.pop_stalest() {
                inner.evicted_total += 1;
                evicted_peer = Some(e.peer);
                // The task may have ended already (its slot is being dropped): no matter.
                let _ = e.evict.send(());
            }
        }
        let (evict, evicted) = oneshot::channel();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.insert(id, now, Entry { peer, evict });
        let slot = Slot {
            table: Arc::clone(self),
            id,
        };
        (slot, evicted, evicted_peer)
    }

    /// Connections holding a slot now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Connections evicted since the listener started.
    pub(super) fn evicted_total(&self) -> u64 {
        self.lock().evicted_total
    }
}

impl Slot {
    /// The connection read a whole request head: it is doing what clients do.
    pub(super) fn progress(&self, now: Instant) {
        let mut inner = self.table.lock();
        if let Some(e) = inner.remove(self.id) {
            inner.insert(self.id, now, e);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn under_the_cap_nobody_is_evicted() {
        let t = Table::new(3);
        let now = Instant::now();
        let mut held: Vec<_> = (1..=3).map(|p| t.admit(peer(p), now)).collect();
        assert_eq!(t.len(), 3);
        for (_, evicted, by) in &mut held {
            assert!(evicted.try_recv().is_err());
            assert!(by.is_none());
        }
        held.pop();
        assert_eq!(t.len(), 2);
        assert_eq!(t.evicted_total(), 0);
    }

    #[test]
    fn at_the_cap_the_stalest_connection_gives_way_not_the_new_one() {
        let t = Table::new(3);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut slow = t.admit(peer(1), at(0));
        let mut busy = t.admit(peer(2), at(0));
        let mut idle = t.admit(peer(3), at(1));
        busy.0.progress(at(5));
        let mut probe = t.admit(peer(4), at(6));
        assert_eq!(probe.2, Some(peer(1)), "the oldest without a request");
        assert!(slow.1.try_recv().is_ok());
        assert!(busy.1.try_recv().is_err());
        assert!(idle.1.try_recv().is_err());
        assert!(probe.1.try_recv().is_err());
        assert_eq!(t.len(), 3);
        // The evicted slot is gone already; its drop changes nothing.
        drop(slow);
        assert_eq!(t.len(), 3);
        let next = t.admit(peer(5), at(7));
        assert_eq!(next.2, Some(peer(3)));
        assert!(idle.1.try_recv().is_ok());
        assert_eq!(t.evicted_total(), 2);
    }
}
