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
    PermissionDenied { path: PathBuf, hint: &'static str },
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

/// Which capability lets a process read this /proc or cgroup file of another user's process
/// (measured on Linux 6.18 with `setpriv` as uid 65534 against a root process):
/// `fd/` is a directory of mode 0500 owned by the target (listing it needs
/// CAP_DAC_READ_SEARCH) whose links are ptrace-checked (reading them needs CAP_SYS_PTRACE);
/// `task/*/syscall` is mode 0400 *and* ptrace-checked (both); `smaps`, `smaps_rollup`,
/// `root/` and `mem` are ptrace-checked. The same uid suffices while the target is dumpable.
pub fn capability_hint(path: &Path) -> &'static str {
    let has = |name: &str| path.iter().any(|c| c == name);
    if has("syscall") {
        "needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, or the target's uid"
    } else if has("fd") || has("fdinfo") {
        "needs CAP_DAC_READ_SEARCH to list and CAP_SYS_PTRACE to read links, or the target's uid"
    } else if has("smaps") || has("smaps_rollup") || has("root") || has("mem") || has("net") {
        "needs CAP_SYS_PTRACE, or the target's uid"
    } else {
        "needs read access: run as the target's uid or root"
    }
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
pub fn read_to_string(path: &Path) -> Result<String, ReadError> {
    std::fs::read_to_string(path).map_err(|e| ReadError::from_io(path, e))
}
