//! Why a value is unknown.
//!
//! Readers turn an `io::Error` on a known path into a [`ReadError`] whose variant tells the
//! caller what to do: [`ReadError::Gone`] means the target (or one task or fd) vanished,
//! [`ReadError::PermissionDenied`] names the capability that would grant access. The
//! collectors keep the reason as an [`Unknown`] in the [`Sample`](crate::sample::Sample), so
//! `/status` and `inspect` can say *why* a value is missing instead of showing 0.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// An error reading one kernel file, with its path.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The process (or task, or fd) no longer exists: ENOENT under a vanished pid, or ESRCH.
    #[error("{path}: the process is gone", path = .path.display())]
    Gone { path: PathBuf },
    /// EACCES/EPERM. `hint` names what would grant access.
    #[error("{path}: permission denied ({hint})", path = .path.display())]
    PermissionDenied { path: PathBuf, hint: String },
    /// The file does not exist (an older kernel, a controller that is not enabled).
    #[error("{path}: no such file", path = .path.display())]
    Missing { path: PathBuf },
    /// The text did not have the expected form.
    #[error("{path}: unexpected content: {msg}", path = .path.display())]
    Parse { path: PathBuf, msg: String },
    /// Any other I/O error.
    #[error("{path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl ReadError {
    /// Classify an I/O error on `path`.
    pub fn from_io(path: &Path, err: io::Error) -> Self {
        let path = path.to_path_buf();
        match err.raw_os_error() {
            Some(libc::ESRCH) => ReadError::Gone { path },
            Some(libc::ENOENT) => ReadError::Missing { path },
            Some(libc::EACCES) | Some(libc::EPERM) => {
                let hint = capability_hint(&path);
                ReadError::PermissionDenied { path, hint }
            }
            _ => ReadError::Io { path, source: err },
        }
    }

    pub fn parse(path: &Path, msg: impl Into<String>) -> Self {
        ReadError::Parse {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            ReadError::Gone { path }
            | ReadError::PermissionDenied { path, .. }
            | ReadError::Missing { path }
            | ReadError::Parse { path, .. }
            | ReadError::Io { path, .. } => path,
        }
    }

    pub fn kind(&self) -> UnknownKind {
        match self {
            ReadError::Gone { .. } => UnknownKind::Gone,
            ReadError::PermissionDenied { .. } => UnknownKind::PermissionDenied,
            ReadError::Missing { .. } => UnknownKind::Missing,
            ReadError::Parse { .. } => UnknownKind::Parse,
            ReadError::Io { .. } => UnknownKind::Io,
        }
    }

    pub fn is_gone(&self) -> bool {
        matches!(self, ReadError::Gone { .. })
    }
}

/// Capability numbers (linux/capability.h).
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;

/// Which capabilities let a process read this /proc file of another user's process
/// (measured on Linux 6.18 with `setpriv` as uid 65534 against a root process):
/// `fd/` is a directory of mode 0500 owned by the target (listing it needs
/// CAP_DAC_READ_SEARCH) whose links are ptrace-checked (reading them needs CAP_SYS_PTRACE);
/// `task/*/syscall` is mode 0400 *and* ptrace-checked (both); `smaps`, `smaps_rollup`,
/// `root/` and `mem` are ptrace-checked. The same uid suffices while the target is dumpable.
fn needed_caps(path: &Path) -> Option<(&'static [(u32, &'static str)], &'static str)> {
    const PTRACE: (u32, &str) = (CAP_SYS_PTRACE, "CAP_SYS_PTRACE");
    const DAC: (u32, &str) = (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH");
    let has = |name: &str| path.iter().any(|c| c == name);
    if has("syscall") {
        Some((
            &[PTRACE, DAC],
            "needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, or the target's uid",
        ))
    } else if has("fd") || has("fdinfo") {
        Some((
            &[PTRACE, DAC],
            "needs CAP_DAC_READ_SEARCH to list and CAP_SYS_PTRACE to read links, or the target's uid",
        ))
    } else if has("smaps") || has("smaps_rollup") || has("root") || has("mem") || has("net") {
        Some((&[PTRACE], "needs CAP_SYS_PTRACE, or the target's uid"))
    } else {
        None
    }
}

/// What would grant access to `path`. When leakwatch already holds those capabilities the
/// advice to add them would mislead: then the kernel's ptrace check itself refused.
pub fn capability_hint(path: &Path) -> String {
    let Some((caps, advice)) = needed_caps(path) else {
        return "needs read access: run as the target's uid or root".into();
    };
    let own = own_effective_caps();
    if own.is_some_and(|own| caps.iter().all(|(bit, _)| own & (1 << bit) != 0)) {
        let names: Vec<&str> = caps.iter().map(|(_, n)| *n).collect();
        return format!(
            "refused although leakwatch holds {}: the target is shielded from ptrace \
             (it may hold capabilities leakwatch lacks, live in another user namespace, \
             or be guarded by Yama or an LSM)",
            names.join(" and ")
        );
    }
    if runs_as_owner_of(path) {
        let names: Vec<&str> = caps.iter().map(|(_, n)| *n).collect();
        return format!(
            "refused although leakwatch runs as the target's uid: the target is non-dumpable \
             or holds capabilities leakwatch lacks; needs {}",
            names.join(" and ")
        );
    }
    advice.to_string()
}

/// Whether leakwatch's effective uid (not root) is the real uid of the process whose /proc
/// file `path` is: then "the target's uid" is no advice, since it already has it.
fn runs_as_owner_of(path: &Path) -> bool {
    let euid = nix::unistd::geteuid().as_raw();
    if euid == 0 {
        return false;
    }
    let Some(pid_dir) = path.ancestors().find(|a| {
        a.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }) else {
        return false;
    };
    std::fs::read_to_string(pid_dir.join("status"))
        .ok()
        .and_then(|s| {
            let uids = s.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            uids.split_whitespace().next()?.parse::<u32>().ok()
        })
        == Some(euid)
}

/// leakwatch's own effective capabilities (`CapEff` of /proc/self/status), read once.
fn own_effective_caps() -> Option<u64> {
    static CAPS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *CAPS.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
        u64::from_str_radix(hex.trim(), 16).ok()
    })
}

/// Why a value is unknown: plain data for `/status`, `inspect --json` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unknown {
    pub kind: UnknownKind,
    /// A human sentence with the path and, for permissions, the capability that would help.
    pub message: String,
}

/// The class of an [`Unknown`], usable as a metric label (`reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownKind {
    Gone,
    Zombie,
    PermissionDenied,
    Missing,
    Parse,
    Io,
    /// Not collected this tick (a slower cadence, or the collector is off).
    NotCollected,
    /// The kernel or this machine does not offer it (e.g. no memory controller).
    Unsupported,
    /// The way leakwatch reads this target does not give it (e.g. `tcp_info` of a target in
    /// another network namespace, read through `/proc/PID/net/tcp`): unknown, with the
    /// reason shown, but not a collector error.
    Unavailable,
}

impl UnknownKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownKind::Gone => "gone",
            UnknownKind::Zombie => "zombie",
            UnknownKind::PermissionDenied => "permission_denied",
            UnknownKind::Missing => "missing",
            UnknownKind::Parse => "parse",
            UnknownKind::Io => "io",
            UnknownKind::NotCollected => "not_collected",
            UnknownKind::Unsupported => "unsupported",
            UnknownKind::Unavailable => "unavailable",
        }
    }
}

impl Unknown {
    pub fn new(kind: UnknownKind, message: impl Into<String>) -> Self {
        Unknown {
            kind,
            message: message.into(),
        }
    }
}

impl From<&ReadError> for Unknown {
    fn from(err: &ReadError) -> Self {
        Unknown::new(err.kind(), err.to_string())
    }
}

impl From<ReadError> for Unknown {
    fn from(err: ReadError) -> Self {
        Unknown::from(&err)
    }
}

/// Read a whole kernel file to a string, attaching the path to any error.
///
/// Kernel text is bytes, not UTF-8: a `comm` (in `stat` and `status`), a mapped file's name
/// (in `smaps`) or a cgroup name may hold any byte. Invalid sequences become U+FFFD, so
/// such a process is still read instead of failing as "not UTF-8".
pub fn read_to_string(path: &Path) -> Result<String, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| ReadError::from_io(path, e))?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comm_that_is_not_utf8_is_read_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        std::fs::write(&path, b"42 () (x\xffy) () S 1 2 3").unwrap();
        let text = read_to_string(&path).expect("invalid UTF-8 is not an error");
        assert_eq!(text, "42 () (x\u{fffd}y) () S 1 2 3");
    }

    #[test]
    fn hints_name_the_capabilities_or_say_they_are_held() {
        let syscall = Path::new("/proc/1/task/1/syscall");
        let smaps = Path::new("/proc/1/smaps");
        let holds = |bit: u32| own_effective_caps().is_some_and(|c| c & (1 << bit) != 0);
        let h = capability_hint(syscall);
        if holds(CAP_SYS_PTRACE) && holds(CAP_DAC_READ_SEARCH) {
            assert!(
                h.starts_with(
                    "refused although leakwatch holds CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"
                ),
                "{h}"
            );
        } else {
            assert_eq!(
                h,
                "needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, or the target's uid"
            );
        }
        let h = capability_hint(smaps);
        assert!(h.contains("CAP_SYS_PTRACE"), "{h}");
        assert_eq!(
            capability_hint(Path::new("/proc/1/status")),
            "needs read access: run as the target's uid or root"
        );
    }
}
