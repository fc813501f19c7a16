//! `Type=notify` support: READY=1 after the first tick, then WATCHDOG=1 from the tick loop
//! while `WATCHDOG_USEC` is set, STOPPING=1 on SIGTERM — received on a real notify socket.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{LeakyChild, BIN};

#[test]
fn ready_then_watchdog_pings_then_stopping() {
    let child = LeakyChild::spawn(&[]);
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--pid", &child.pid().to_string()])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000");
    let d = Daemon::start_with(&mut cmd);

    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() < 3
    {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let ready = seen.iter().position(|m| m.starts_with("READY=1"));
    let first_ping = seen.iter().position(|m| m == "WATCHDOG=1");
    assert!(ready.is_some(), "no READY=1: {seen:?}");
    assert!(first_ping.is_some(), "no WATCHDOG=1: {seen:?}");
    assert!(
        ready < first_ping,
        "READY=1 before any WATCHDOG=1: {seen:?}"
    );
    assert!(
        seen[ready.unwrap()].contains("STATUS="),
        "READY carries a status line: {seen:?}"
    );
    let status = d.stop().expect("exits");
    assert_eq!(status.code(), Some(0));
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
    }
    assert!(stopping, "STOPPING=1 on SIGTERM");
}
