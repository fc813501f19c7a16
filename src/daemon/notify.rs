//! The systemd notification protocol (sd_notify(3)): `READY=1` after the first tick,
//! `WATCHDOG=1` from the tick loop, `RELOADING=1`/`STOPPING=1`, `STATUS=...`. A datagram to
//! `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace); nothing without it.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tracing::debug;

/// Where notifications go; `None` when not started by systemd with `Type=notify`.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (honouring `$WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|p| {
            let p = p.to_string_lossy().into_owned();
            let addr = match p.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
                None => SocketAddr::from_pathname(&p).ok()?,
            };
            Some((nonblocking_socket()?, addr))
        });
        Notifier {
            target,
            watchdog: watchdog_interval(
                std::env::var("WATCHDOG_USEC").ok().as_deref(),
                std::env::var("WATCHDOG_PID").ok().as_deref(),
                std::process::id(),
            ),
        }
    }

    /// No notifications (tests, the demo).
    pub fn none() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// The `WatchdogSec` systemd asked for, when it did.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Send `state` (newline-separated `KEY=value` lines); errors are logged, not fatal.
    /// Never waits: when the receiver's queue is full (`net.unix.max_dgram_qlen` datagrams
    /// nobody has read, e.g. while PID 1 lags) the message is dropped, since the tick loop
    /// and the HTTP server share the runtime this is called from.
    pub fn notify(&self, state: &str) {
        let Some((sock, addr)) = &self.target else {
            return;
        };
        if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
            debug!(error = %e, "sd_notify failed");
        }
    }
}

/// An unbound datagram socket whose sends fail with EAGAIN instead of blocking.
fn nonblocking_socket() -> Option<UnixDatagram> {
    let sock = UnixDatagram::unbound().ok()?;
    sock.set_nonblocking(true).ok()?;
    Some(sock)
}

/// `WATCHDOG_USEC` as a duration, when set, valid, and meant for this pid.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let us: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_usec_is_read_for_this_pid_only() {
        assert_eq!(
            watchdog_interval(Some("20000000"), None, 7),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            watchdog_interval(Some("20000000"), Some("7"), 7),
            Some(Duration::from_secs(20))
        );
        assert_eq!(watchdog_interval(Some("20000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: None,
        };
        n.notify("READY=1\nSTATUS=watching 1 target");
        let mut buf = [0u8; 128];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=watching 1 target");
    }

    /// Regression: with a blocking socket the 11th unread datagram (max_dgram_qlen is 10
    /// on many hosts) blocked the runtime thread, and /healthz stopped answering.
    #[test]
    fn a_receiver_that_never_reads_does_not_block_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _deaf = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                nonblocking_socket().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: None,
        };
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..1000 {
                n.notify("WATCHDOG=1");
            }
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(30)).is_ok(),
            "notify blocked on a full receiver queue"
        );
    }
}
