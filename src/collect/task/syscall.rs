//! `/proc/PID/task/TID/syscall` (proc(5)): which call a blocked thread sits in, and whether
//! that wait can be a stuck socket worker. Pure: no I/O.
//!
//! The file holds one of
//! - `running`: the thread is on a CPU;
//! - `-1 SP PC`: blocked, but not in a system call (e.g. a page fault, a stop);
//! - `NR ARG1 ARG2 ARG3 ARG4 ARG5 ARG6 SP PC`: in call `NR` (decimal); the arguments, stack
//!   pointer and program counter in hex (`0x...`).
//!
//! Call numbers are those of the build's architecture (`libc::SYS_*`); leakwatch runs on the
//! target's kernel, so they match, except for a 32-bit (compat) target on a 64-bit kernel,
//! whose numbers are its own and are then mostly unknown here (never stuck, not wrong).

use libc::c_long;

use crate::sample::SyscallState;

/// Parse the text of a `syscall` file. Odd text is an error, never a panic.
pub fn parse_syscall(text: &str) -> Result<SyscallState, String> {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let (first, rest) = match fields.split_first() {
        Some((first, rest)) => (*first, rest),
        None => return Err("empty".into()),
    };
    if first == "running" {
        return match rest {
            [] => Ok(SyscallState::Running),
            _ => Err(format!("{} fields after \"running\"", rest.len())),
        };
    }
    let nr: i64 = first
        .parse()
        .map_err(|_| format!("call number {first:?} is not a number"))?;
    match (nr, rest) {
        (-1, [sp, pc]) => {
            hex(sp)?;
            hex(pc)?;
            Ok(SyscallState::NotInSyscall)
        }
        (-1, _) => Err(format!("\"-1\" needs 2 more fields, got {}", rest.len())),
        (nr, _) if nr < 0 => Err(format!("negative call number {nr}")),
        (nr, [a0, a1, a2, a3, a4, a5, sp, pc]) => {
            let mut args = [0u64; 6];
            for (slot, text) in args.iter_mut().zip([a0, a1, a2, a3, a4, a5]) {
                *slot = hex(text)?;
            }
            hex(sp)?;
            hex(pc)?;
            Ok(SyscallState::In { nr, args })
        }
        (_, _) => Err(format!("call {nr} needs 8 more fields, got {}", rest.len())),
    }
}

/// `0x` followed by 1 to 16 hex digits.
fn hex(text: &str) -> Result<u64, String> {
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| format!("{text:?} is not 0x-hex"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not 0x-hex"));
    }
    u64::from_str_radix(digits, 16).map_err(|_| format!("{text:?} does not fit 64 bits"))
}

/// What a blocked call waits on, as far as the stuck-worker check is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Blocks on the fd in its first argument: read, recv*, write, send*, connect.
    FdWait,
    /// `poll`/`ppoll`: a `struct pollfd` array (first argument) of `nfds` (second) entries.
    Poll,
    /// Waiting for work or time: accept, epoll, select, futex, sleeps, wait. Never stuck.
    Idle,
}

use CallKind::{FdWait, Idle, Poll};

/// The calls known on every architecture: (number, name, kind).
const CALLS: &[(c_long, &str, CallKind)] = &[
    (libc::SYS_read, "read", FdWait),
    (libc::SYS_readv, "readv", FdWait),
    (libc::SYS_recvfrom, "recvfrom", FdWait),
    (libc::SYS_recvmsg, "recvmsg", FdWait),
    (libc::SYS_recvmmsg, "recvmmsg", FdWait),
    (libc::SYS_write, "write", FdWait),
    (libc::SYS_writev, "writev", FdWait),
    (libc::SYS_sendto, "sendto", FdWait),
    (libc::SYS_sendmsg, "sendmsg", FdWait),
    (libc::SYS_sendmmsg, "sendmmsg", FdWait),
    (libc::SYS_connect, "connect", FdWait),
    (libc::SYS_ppoll, "ppoll", Poll),
    (libc::SYS_pselect6, "pselect6", Idle),
    (libc::SYS_accept, "accept", Idle),
    (libc::SYS_accept4, "accept4", Idle),
    (libc::SYS_epoll_pwait, "epoll_pwait", Idle),
    (libc::SYS_epoll_pwait2, "epoll_pwait2", Idle),
    (libc::SYS_futex, "futex", Idle),
    (libc::SYS_futex_waitv, "futex_waitv", Idle),
    (libc::SYS_nanosleep, "nanosleep", Idle),
    (libc::SYS_clock_nanosleep, "clock_nanosleep", Idle),
    (libc::SYS_wait4, "wait4", Idle),
    (libc::SYS_waitid, "waitid", Idle),
    (libc::SYS_rt_sigsuspend, "rt_sigsuspend", Idle),
    (libc::SYS_rt_sigtimedwait, "rt_sigtimedwait", Idle),
    (libc::SYS_io_getevents, "io_getevents", Idle),
];

/// The legacy calls that only some architectures have (the generic table of aarch64 and
/// riscv64 dropped them in favour of ppoll, pselect6 and epoll_pwait).
#[cfg(target_arch = "x86_64")]
const ARCH_CALLS: &[(c_long, &str, CallKind)] = &[
    (libc::SYS_poll, "poll", Poll),
    (libc::SYS_select, "select", Idle),
    (libc::SYS_epoll_wait, "epoll_wait", Idle),
    (libc::SYS_pause, "pause", Idle),
];
#[cfg(not(target_arch = "x86_64"))]
const ARCH_CALLS: &[(c_long, &str, CallKind)] = &[];

/// A `libc::SYS_*` number as the `syscall` file's `i64` (`c_long` is i32 on 32-bit targets).
#[allow(clippy::useless_conversion)]
pub fn sys(nr: c_long) -> i64 {
    i64::from(nr)
}

fn lookup(nr: i64) -> Option<(&'static str, CallKind)> {
    CALLS
        .iter()
        .chain(ARCH_CALLS)
        .find(|(n, _, _)| sys(*n) == nr)
        .map(|(_, name, kind)| (*name, *kind))
}

/// The name of call `nr` (`"recvfrom"`), when this module knows it.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    lookup(nr).map(|(name, _)| name)
}

/// What call `nr` waits on; `None` for calls that are neither socket waits nor idle.
pub fn call_kind(nr: i64) -> Option<CallKind> {
    lookup(nr).map(|(_, kind)| kind)
}

/// Largest `nfds` of a poll whose array is read from the target's memory.
pub const POLL_MAX_FDS: u64 = 16;

/// Size of one `struct pollfd { int fd; short events; short revents; }`.
pub const POLLFD_BYTES: usize = std::mem::size_of::<libc::pollfd>();

/// The fds of a `struct pollfd` array in the target's byte order; negative fds (which
/// poll ignores) are left out, as is a trailing partial entry.
pub fn parse_pollfds(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(POLLFD_BYTES)
        .filter_map(|entry| {
            let fd = i32::from_ne_bytes(entry.get(..4)?.try_into().ok()?);
            (fd >= 0).then_some(fd)
        })
        .collect()
}

/// The fd argument of a call whose first argument is an `int fd`. The kernel reads only
/// the low 32 bits of the register, and so does this.
pub fn fd_arg(arg: u64) -> Option<i32> {
    let low = u32::try_from(arg & 0xffff_ffff).ok()?;
    i32::try_from(low).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECVFROM: &str =
        include_str!("../../../tests/fixtures/task/syscall_recvfrom_kernel_6_18");
    const ACCEPT4: &str = include_str!("../../../tests/fixtures/task/syscall_accept4_kernel_6_18");
    const FUTEX: &str = include_str!("../../../tests/fixtures/task/syscall_futex_kernel_6_18");
    const READ_PIPE: &str =
        include_str!("../../../tests/fixtures/task/syscall_read_pipe_kernel_6_18");
    const CLOCK_NANOSLEEP: &str =
        include_str!("../../../tests/fixtures/task/syscall_clock_nanosleep_kernel_6_18");
    const RUNNING: &str = include_str!("../../../tests/fixtures/task/syscall_running_kernel_6_18");
    const NOT_IN_SYSCALL: &str =
        include_str!("../../../tests/fixtures/task/syscall_not_in_syscall_kernel_6_18");
    const ALL: [&str; 7] = [
        RECVFROM,
        ACCEPT4,
        FUTEX,
        READ_PIPE,
        CLOCK_NANOSLEEP,
        RUNNING,
        NOT_IN_SYSCALL,
    ];

    fn nr_args(text: &str) -> (i64, [u64; 6]) {
        match parse_syscall(text) {
            Ok(SyscallState::In { nr, args }) => (nr, args),
            other => panic!("expected a call, got {other:?}"),
        }
    }

    #[test]
    fn syscall_recvfrom_kernel_6_18() {
        let (nr, args) = nr_args(RECVFROM);
        assert_eq!(nr, sys(libc::SYS_recvfrom));
        assert_eq!(args, [0xb, 0x7f2ecddb1847, 0x200, 0, 0, 0]);
        assert_eq!(syscall_name(nr), Some("recvfrom"));
        assert_eq!(call_kind(nr), Some(CallKind::FdWait));
        assert_eq!(fd_arg(args[0]), Some(11));
    }

    #[test]
    fn syscall_accept4_kernel_6_18() {
        let (nr, args) = nr_args(ACCEPT4);
        assert_eq!(nr, sys(libc::SYS_accept4));
        assert_eq!(args[0], 0x11);
        assert_eq!(args[3], 0x80000); // SOCK_CLOEXEC
        assert_eq!(syscall_name(nr), Some("accept4"));
        assert_eq!(call_kind(nr), Some(CallKind::Idle));
    }

    #[test]
    fn syscall_futex_kernel_6_18() {
        let (nr, args) = nr_args(FUTEX);
        assert_eq!(nr, sys(libc::SYS_futex));
        assert_eq!(args[1], 0x189); // FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG | CLOCK_REALTIME
        assert_eq!(args[5], 0xffff_ffff);
        assert_eq!(call_kind(nr), Some(CallKind::Idle));
    }

    #[test]
    fn syscall_read_pipe_and_sleep_kernel_6_18() {
        let (nr, args) = nr_args(READ_PIPE);
        assert_eq!((syscall_name(nr), fd_arg(args[0])), (Some("read"), Some(0)));
        assert_eq!(call_kind(nr), Some(CallKind::FdWait));
        let (nr, _) = nr_args(CLOCK_NANOSLEEP);
        assert_eq!(syscall_name(nr), Some("clock_nanosleep"));
        assert_eq!(call_kind(nr), Some(CallKind::Idle));
    }

    #[test]
    fn syscall_running_kernel_6_18() {
        assert_eq!(parse_syscall(RUNNING), Ok(SyscallState::Running));
    }

    #[test]
    fn syscall_not_in_syscall_kernel_6_18() {
        assert_eq!(
            parse_syscall(NOT_IN_SYSCALL),
            Ok(SyscallState::NotInSyscall)
        );
    }

    #[test]
    fn every_prefix_of_real_text_parses_or_errors_without_panic() {
        for text in ALL {
            for cut in 0..=text.len() {
                let _ = parse_syscall(&text[..cut]);
            }
        }
        // A cut inside the argument list leaves too few fields.
        assert!(parse_syscall(&RECVFROM[..RECVFROM.len() / 2]).is_err());
    }

    #[test]
    fn odd_text_is_an_error() {
        let odd = [
            "",
            "\n",
            "running now",
            "runn",
            "-1",
            "-1 0x1",
            "-1 0x1 0x2 0x3",
            "-2 0x1 0x2",
            "45 0xb 0x0 0x0 0x0 0x0 0x0 0x0",         // 7 after nr
            "45 0xb 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0", // 9 after nr
            "45 11 0x0 0x0 0x0 0x0 0x0 0x0 0x0",      // decimal arg
            "45 0x 0x0 0x0 0x0 0x0 0x0 0x0 0x0",      // no digits
            "45 0x+1 0x0 0x0 0x0 0x0 0x0 0x0 0x0",    // sign
            "45 0xg 0x0 0x0 0x0 0x0 0x0 0x0 0x0",     // not hex
            "45 0x10000000000000000 0x0 0x0 0x0 0x0 0x0 0x0 0x0", // 65 bits
            "x45 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
            "99999999999999999999 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
            "\u{fffd}\u{0}",
        ];
        for text in odd {
            assert!(parse_syscall(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn idle_calls_are_idle_and_socket_calls_wait_on_their_fd() {
        for nr in [
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_epoll_pwait,
            libc::SYS_futex,
            libc::SYS_nanosleep,
            libc::SYS_clock_nanosleep,
            libc::SYS_pselect6,
        ] {
            assert_eq!(call_kind(sys(nr)), Some(CallKind::Idle), "{nr}");
        }
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(call_kind(sys(libc::SYS_epoll_wait)), Some(CallKind::Idle));
            assert_eq!(call_kind(sys(libc::SYS_select)), Some(CallKind::Idle));
            assert_eq!(call_kind(sys(libc::SYS_poll)), Some(CallKind::Poll));
        }
        assert_eq!(call_kind(sys(libc::SYS_ppoll)), Some(CallKind::Poll));
        for nr in [libc::SYS_sendmsg, libc::SYS_connect, libc::SYS_writev] {
            assert_eq!(call_kind(sys(nr)), Some(CallKind::FdWait), "{nr}");
        }
        assert_eq!(call_kind(sys(libc::SYS_getpid)), None);
        assert_eq!(syscall_name(100_000), None);
    }

    #[test]
    fn pollfd_arrays() {
        let mut bytes = Vec::new();
        for (fd, events) in [(7i32, 1i16), (-1, 1), (3, 4)] {
            bytes.extend_from_slice(&fd.to_ne_bytes());
            bytes.extend_from_slice(&events.to_ne_bytes());
            bytes.extend_from_slice(&0i16.to_ne_bytes());
        }
        assert_eq!(parse_pollfds(&bytes), vec![7, 3]);
        assert_eq!(parse_pollfds(&bytes[..11]), vec![7]);
        assert_eq!(parse_pollfds(&[]), Vec::<i32>::new());
    }

    #[test]
    fn fd_argument_uses_the_low_32_bits() {
        assert_eq!(fd_arg(0xb), Some(11));
        assert_eq!(fd_arg(0xffff_ffff_0000_0005), Some(5));
        assert_eq!(fd_arg(0xffff_ffff), None); // -1
    }
}
