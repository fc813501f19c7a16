//! The exec hook: `argv` run without a shell, in a process group of its own, with the
//! verdict in its environment; its output (stdout and stderr, at most [`OUTPUT_MAX`] bytes
//! kept) is returned for the log; at its timeout the group and the hook are killed.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::config::actions::ExecConfig;
use crate::units;

/// Output kept from the hook (both streams together), bytes.
pub const OUTPUT_MAX: usize = 8 * 1024;

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    pub ok: bool,
    /// `exit 0`, `exit 3`, `killed by SIGSEGV`, `killed at its timeout (30s)`, or why it
    /// could not start.
    pub summary: String,
    /// The first [`OUTPUT_MAX`] bytes of its stdout and stderr, lossy UTF-8.
    pub output: String,
    /// Bytes of output beyond what was kept.
    pub output_dropped: u64,
    pub pid: Option<i32>,
}

/// Run the hook with `env` added to leakwatch's environment; blocks up to the timeout (and
/// a second more for its output).
pub fn run(cfg: &ExecConfig, env: &[(&str, String)]) -> HookRun {
    let mut cmd = Command::new(&cfg.argv[0]);
    cmd.args(&cfg.argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return HookRun {
                ok: false,
                summary: format!("cannot start {:?}: {e}", cfg.argv[0]),
                output: String::new(),
                output_dropped: 0,
                pid: None,
            }
        }
    };
    let pid = child.id() as i32;
    let output = read_output(&mut child);
    let (status, timed_out) = wait_or_kill(&mut child, pid, cfg.timeout);
    let (output, output_dropped) = collect_output(&output);
    HookRun {
        ok: !timed_out && status.is_some_and(|s| s.success()),
        summary: summary(timed_out, status, cfg.timeout),
        output: String::from_utf8_lossy(&output).into_owned(),
        output_dropped,
        pid: Some(pid),
    }
}

/// A thread per output stream, each sending what it read (kept, dropped) at its end.
fn read_output(child: &mut Child) -> mpsc::Receiver<(Vec<u8>, u64)> {
    let (tx, rx) = mpsc::channel();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(drain(stream));
        });
    }
    rx
}

/// The hook's exit status, killing it (its process group first) at `timeout`; and whether
/// it was killed so.
fn wait_or_kill(child: &mut Child, pid: i32, timeout: Duration) -> (Option<ExitStatus>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return (Some(st), false),
            Ok(None) if Instant::now() >= deadline => {
                // The group first (what it started), then the hook itself.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                return (child.wait().ok(), true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return (None, false),
        }
    }
}

/// The output the readers send, at most [`OUTPUT_MAX`] bytes of it, and the bytes dropped.
fn collect_output(rx: &mpsc::Receiver<(Vec<u8>, u64)>) -> (Vec<u8>, u64) {
    // The readers end when every holder of the pipes has exited; one that left the group
    // may keep them open: do not wait for it.
    let mut output = Vec::new();
    let mut dropped = 0u64;
    let wait_until = Instant::now() + Duration::from_secs(1);
    while let Some(left) = wait_until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((bytes, more)) => {
                let room = OUTPUT_MAX.saturating_sub(output.len());
                dropped += more + bytes.len().saturating_sub(room) as u64;
                output.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Err(_) => break,
        }
    }
    (output, dropped)
}

/// `exit 0`, `killed by SIGTERM`, `killed at its timeout (10s)`, ...
fn summary(timed_out: bool, status: Option<ExitStatus>, timeout: Duration) -> String {
    match (timed_out, status) {
        (true, _) => format!(
            "killed at its timeout ({})",
            units::duration_ms(timeout.as_millis() as u64)
        ),
        (false, Some(st)) => match (st.code(), st.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!(
                "killed by {}",
                Signal::try_from(s).map_or(format!("signal {s}"), |s| s.as_str().to_string())
            ),
            _ => "ended".to_string(),
        },
        (false, None) => "its status could not be read".to_string(),
    }
}

/// Read a stream to its end, keeping at most [`OUTPUT_MAX`] bytes; (kept, bytes dropped).
fn drain(mut r: Box<dyn Read + Send>) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return (kept, dropped),
            Ok(n) => {
                let room = OUTPUT_MAX.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
                dropped += (n - room) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(argv: &[&str], timeout_ms: u64) -> ExecConfig {
        ExecConfig {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn the_hook_gets_its_environment_and_its_output_is_kept() {
        let cfg = hook(
            &[
                "sh",
                "-c",
                "echo target=$LEAKWATCH_TARGET pid=$LEAKWATCH_PID; echo err >&2; exit 3",
            ],
            10_000,
        );
        let r = run(
            &cfg,
            &[
                ("LEAKWATCH_TARGET", "app".into()),
                ("LEAKWATCH_PID", "42".into()),
            ],
        );
        assert!(!r.ok);
        assert_eq!(r.summary, "exit 3");
        assert!(r.output.contains("target=app pid=42"), "{r:?}");
        assert!(r.output.contains("err"), "{r:?}");
    }

    #[test]
    fn output_is_bounded() {
        let cfg = hook(
            &["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x"],
            10_000,
        );
        let r = run(&cfg, &[]);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.output.len(), OUTPUT_MAX);
        assert_eq!(r.output_dropped, 100_000 - OUTPUT_MAX as u64);
    }

    #[test]
    fn a_hook_that_cannot_start_says_why() {
        let r = run(&hook(&["/nonexistent/hook"], 1000), &[]);
        assert!(!r.ok);
        assert!(r.summary.contains("cannot start"), "{r:?}");
    }

    #[test]
    fn the_hook_and_its_group_are_killed_at_the_timeout() {
        // The hook starts a grandchild in its group, prints its pid and then hangs.
        let cfg = hook(&["sh", "-c", "sleep 60 & echo $!; sleep 60"], 300);
        let started = Instant::now();
        let r = run(&cfg, &[]);
        assert!(!r.ok);
        assert!(r.summary.starts_with("killed at its timeout"), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not the 60 s of sleep"
        );
        let grandchild: i32 = r.output.trim().parse().expect("the grandchild's pid");
        // Killed with the group: gone, or a zombie left for init to reap.
        let gone = (0..100).any(|_| {
            let st = std::fs::read_to_string(format!("/proc/{grandchild}/stat"));
            let done = st.map_or(true, |s| s.contains(") Z "));
            if !done {
                std::thread::sleep(Duration::from_millis(20));
            }
            done
        });
        assert!(gone, "the hook's group outlived its timeout");
        let hook_pid = r.pid.unwrap();
        assert!(
            std::fs::metadata(format!("/proc/{hook_pid}")).is_err(),
            "the hook was reaped"
        );
    }
}
