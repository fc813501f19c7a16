//! The signal action: `pidfd_open(2)` on the target's pid, then the identity check, then
//! `pidfd_send_signal(2)` on that pidfd.
//!
//! The order is what makes a reused pid impossible to hit: the pidfd pins the process that
//! held the pid when it was opened. If `/proc/PID/stat` read *after* the open shows the
//! target's start time, the target held the pid at the open too (it was alive before and
//! after, and a live pid has one owner), so the pidfd is the target's; a signal through it
//! can only reach the target, or fail with ESRCH once it has exited. The kernel's own view of
//! the pidfd (`Pid:` in `/proc/self/fdinfo/FD`, -1 once the process has exited) is checked too.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::collect::stat;
use crate::sample::TargetId;

/// Why no signal was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSent {
    /// The target is gone or the pid is another process's: refused on purpose.
    pub refused: bool,
    pub message: String,
}

/// Send `signal` to the process `id` names, never to another process holding its pid.
pub fn send(proc_root: &Path, id: TargetId, signal: i32) -> Result<(), NotSent> {
    let refused = |message: String| NotSent {
        refused: true,
        message,
    };
    let failed = |message: String| NotSent {
        refused: false,
        message,
    };
    let pidfd = pidfd_open(id.pid).map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) => refused(format!("{id} has exited: no signal sent")),
        _ => failed(format!("pidfd_open({}): {e}: no signal sent", id.pid)),
    })?;
    identify(&pidfd, proc_root, id).map_err(refused)?;
    // SAFETY: pidfd_send_signal(2) reads only its integer arguments and the fd we own for
    // the whole call; a null siginfo is allowed (the kernel fills one in as for kill(2)).
    // Not rustix's pidfd_send_signal: its `Signal` is safely made only from the named
    // signals, and `signal` may be any number the config accepts, real-time ones included
    // (`Signal::from_raw_unchecked` would be unsafe all the same); nix has no wrapper.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ESRCH) => refused(format!("{id} exited before the signal: none sent")),
            _ => failed(format!("pidfd_send_signal to {id}: {e}")),
        });
    }
    Ok(())
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// The pidfd (opened before this check) is the target's: its process still holds `id.pid`,
/// and `PROC/PID/stat` shows `id`'s start time.
pub fn identify(pidfd: &OwnedFd, proc_root: &Path, id: TargetId) -> Result<(), String> {
    let fdinfo = format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd());
    let pid = std::fs::read_to_string(&fdinfo)
        .ok()
        .and_then(|t| pidfd_pid(&t));
    match pid {
        Some(p) if p == id.pid => {}
        Some(-1) => return Err(format!("{id} has exited: no signal sent")),
        Some(p) => return Err(format!("the pidfd for {id} names pid {p}: no signal sent")),
        // Kernels before 5.x lack the line: the start time below still decides.
        None => {}
    }
    let pid_dir = proc_root.join(id.pid.to_string());
    let st = stat::read_stat(&pid_dir)
        .map_err(|e| format!("cannot check who holds pid {}: {e}: no signal sent", id.pid))?;
    if st.starttime_ticks != id.starttime_ticks {
        return Err(format!(
            "pid {} now belongs to another process (start {}, the target's was {}): no signal \
             sent",
            id.pid, st.starttime_ticks, id.starttime_ticks
        ));
    }
    if st.state == 'Z' || st.state == 'X' {
        return Err(format!("{id} has exited (zombie): no signal sent"));
    }
    Ok(())
}

/// The `Pid:` line of a pidfd's fdinfo.
fn pidfd_pid(fdinfo: &str) -> Option<i32> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    //! Real pidfds on real children; pid reuse is staged with a fixture `/proc/PID/stat`
    //! that gives the pid's holder another start time (a live reuse cannot be forced).

    use std::process::{Command, Stdio};

    use super::*;

    fn sleeper() -> std::process::Child {
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep")
    }

    fn id_of(pid: i32) -> TargetId {
        let st = stat::read_stat(&Path::new("/proc").join(pid.to_string())).unwrap();
        TargetId {
            pid,
            starttime_ticks: st.starttime_ticks,
        }
    }

    /// The child's state letter from the real /proc (S while sleeping, Z once killed).
    fn state(pid: i32) -> char {
        stat::read_stat(&Path::new("/proc").join(pid.to_string()))
            .unwrap()
            .state
    }

    #[test]
    fn the_signal_reaches_the_identified_process() {
        let mut child = sleeper();
        let id = id_of(child.id() as i32);
        send(Path::new("/proc"), id, libc::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn a_pid_held_by_another_start_time_gets_no_signal() {
        // The target was (pid, start S). The fixture /proc says the process now holding the
        // pid started at S + 7: as if the target exited and its pid went to this process.
        // The pidfd is opened on the real holder; the check must refuse it.
        let mut holder = sleeper();
        let pid = holder.id() as i32;
        let target = id_of(pid);
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(pid.to_string());
        std::fs::create_dir(&dir).unwrap();
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let mut fields: Vec<String> = text.trim().split(' ').map(String::from).collect();
        let close = fields.iter().position(|f| f.ends_with(')')).unwrap();
        fields[close + 20] = (target.starttime_ticks + 7).to_string();
        std::fs::write(dir.join("stat"), fields.join(" ") + "\n").unwrap();

        let err = send(root.path(), target, libc::SIGKILL).unwrap_err();
        assert!(err.refused, "{err:?}");
        assert!(err.message.contains("another process"), "{err:?}");
        // The same with the real /proc: a start time that is not the holder's.
        let stale = TargetId {
            pid,
            starttime_ticks: target.starttime_ticks + 1,
        };
        let err = send(Path::new("/proc"), stale, libc::SIGKILL).unwrap_err();
        assert!(err.message.contains("another process"), "{err:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(
            holder.try_wait().unwrap(),
            None,
            "the holder got no SIGKILL"
        );
        assert_eq!(state(pid), 'S');
        holder.kill().unwrap();
        holder.wait().unwrap();
    }

    #[test]
    fn an_exited_target_gets_no_signal() {
        let mut child = sleeper();
        let id = id_of(child.id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        let err = send(Path::new("/proc"), id, libc::SIGTERM).unwrap_err();
        assert!(err.refused, "{err:?}");
        let m = &err.message;
        assert!(m.contains("exited") || m.contains("another process"), "{m}");
    }

    #[test]
    fn a_zombie_is_not_signalled() {
        let mut child = sleeper();
        let pid = child.id() as i32;
        let id = id_of(pid);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
        for _ in 0..100 {
            if state(pid) == 'Z' {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(state(pid), 'Z');
        let err = send(Path::new("/proc"), id, libc::SIGTERM).unwrap_err();
        assert!(err.message.contains("exited"), "{err:?}");
        child.wait().unwrap();
    }

    #[test]
    fn fdinfo_pid_line() {
        assert_eq!(
            pidfd_pid("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nPid:\t42\nNSpid:\t42\n"),
            Some(42)
        );
        assert_eq!(pidfd_pid("Pid:\t-1\n"), Some(-1));
        assert_eq!(pidfd_pid("pos:\t0\n"), None);
    }
}
