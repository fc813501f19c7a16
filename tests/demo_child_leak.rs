//! `leakwatch demo-child --leak-every`: the Helm chart's demo target. In a pod its stdin is
//! closed, so it must leak by itself (one CLOSE_WAIT socket per period), keep running when
//! stdin is at EOF, and keep running when it hits its fd limit, like a leaking service.
//! Either way, and with stdin open and silent, it ends by itself at `--max-seconds`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{count_fds, eventually, ss_states, BIN};

/// Kills (by its own pid) and reaps the child on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn alive(child: &mut Child) -> bool {
    child.try_wait().expect("try_wait").is_none()
}

#[test]
fn leaks_close_wait_sockets_without_stdin_until_its_fd_limit() {
    let child = Command::new(BIN)
        .args(["demo-child", "--leak-every", "20ms", "--nofile", "40"])
        .args(["--max-seconds", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demo-child");
    let mut child = Reaped(child);
    let mut ready = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("ready "), "{ready:?}");
    let pid = child.0.id() as i32;

    let close_wait = |pid| ss_states(pid).get("close_wait").copied().unwrap_or(0);
    assert!(
        eventually(|| close_wait(pid) >= 5),
        "CLOSE_WAIT sockets pile up with stdin at EOF: {:?}",
        ss_states(pid)
    );
    assert!(alive(&mut child.0), "stdin at EOF does not end it");

    // It runs into RLIMIT_NOFILE (40) and goes on running, saying why it cannot leak more.
    assert!(
        eventually(|| count_fds(pid) >= 39),
        "fds grow to the limit: {} open",
        count_fds(pid)
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(alive(&mut child.0), "EMFILE does not end it");
    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("Too many open files"), "{stderr}");
}

/// Wait up to `limit` for the child to exit; its status, `None` if it is still running.
fn exit_within(child: &mut Child, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

#[test]
fn ends_by_itself_at_max_seconds_with_stdin_open_or_leaking() {
    for (mode, extra, stdin) in [
        ("commands, stdin open", &[][..], Stdio::piped()),
        ("--leak-every", &["--leak-every", "50ms"][..], Stdio::null()),
    ] {
        let child = Command::new(BIN)
            .args(["demo-child", "--max-seconds", "1"])
            .args(extra)
            .stdin(stdin)
            .stdout(Stdio::null())
            .spawn()
            .expect("start demo-child");
        // The test holds the child's stdin (when piped) open until the end.
        let mut child = Reaped(child);
        let status = exit_within(&mut child.0, std::time::Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "{mode}: the child did not end cleanly by --max-seconds: {status:?}"
        );
    }
}
