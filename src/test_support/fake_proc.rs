//! A fixture /proc tree in a directory, in the manner of below's `TestProcfs`: each file is
//! text captured from a real kernel (tests/fixtures/proc, Linux 6.18) with only the pid,
//! name, state and start time changed, and `fd/` holds real symlinks. For what no machine
//! here stages on demand: a reused pid, a zombie, a `status` that hangs, mutated files.
//!
//! ```text
//! let proc = FakeProc::new("/tmp/x/proc");
//! let pid = proc.pid(4242).stat('S', 1000).status().limits().cmdline(&["fixture"]);
//! let pid = pid.fds([(0, "/dev/null"), (3, "socket:[77]")]);
//! ```

use std::fs;
use std::path::{Path, PathBuf};

/// `/proc/PID/stat` of `sleep` (pid 2063), captured on Linux 6.18.
pub const STAT_KERNEL_6_18: &str = include_str!("../../tests/fixtures/proc/stat_kernel_6_18");
/// `/proc/PID/status` of the same `sleep`.
pub const STATUS_KERNEL_6_18: &str = include_str!("../../tests/fixtures/proc/status_kernel_6_18");
/// `/proc/PID/limits` of the same `sleep` (RLIMIT_NOFILE 1024).
pub const LIMITS_KERNEL_6_18: &str = include_str!("../../tests/fixtures/proc/limits_kernel_6_18");
/// `/proc/PID/smaps` of `leakwatch demo-child` (threads, malloc arenas, 3 MiB allocated):
/// a heap estimate of 80 KiB of `[heap]` and 3136 KiB in anonymous mappings.
pub const SMAPS_KERNEL_6_18: &str =
    include_str!("../../tests/fixtures/proc/smaps_rust_threads_kernel_6_18");
/// The start time (clock ticks after boot) in [`STAT_KERNEL_6_18`].
pub const STARTTIME_KERNEL_6_18: u64 = 33157;
/// The fixture root's own `stat`: the boot time that dates a process's start.
pub const BOOT_STAT: &str = "cpu  0 0 0 0\nbtime 1763700000\n";

/// A fake /proc rooted at a directory the test owns (a temp dir).
#[derive(Debug, Clone)]
pub struct FakeProc {
    root: PathBuf,
}

impl FakeProc {
    /// `root` (created when absent) as a /proc with its `stat` ([`BOOT_STAT`]).
    pub fn new(root: impl Into<PathBuf>) -> FakeProc {
        let root = root.into();
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("stat"), BOOT_STAT).unwrap();
        FakeProc { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/PID` with an empty `fd/` (kept when already there); its files are written by
    /// the [`FakePid`] methods. Its name in `stat` is `fixture` unless [`FakePid::comm`]
    /// says otherwise.
    pub fn pid(&self, pid: i32) -> FakePid {
        let dir = self.root.join(pid.to_string());
        fs::create_dir_all(dir.join("fd")).unwrap();
        FakePid {
            pid,
            dir,
            comm: "fixture".into(),
        }
    }
}

/// One process of a [`FakeProc`]; each method writes its file at once and returns the
/// builder, so a test can rewrite a file (a new start time, a zombie) between ticks.
#[derive(Debug, Clone)]
pub struct FakePid {
    pid: i32,
    dir: PathBuf,
    comm: String,
}

impl FakePid {
    /// `ROOT/PID`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name the next [`stat`](Self::stat) writes (`comm`, at most 15 bytes on a kernel).
    pub fn comm(mut self, comm: &str) -> FakePid {
        self.comm = comm.into();
        self
    }

    /// `stat`: [`STAT_KERNEL_6_18`] with this pid, name, `state` (e.g. `'S'`, `'Z'`) and
    /// `starttime` (clock ticks after boot).
    pub fn stat(self, state: char, starttime: u64) -> FakePid {
        let text = stat_line(self.pid, &self.comm, state, starttime);
        self.file("stat", text)
    }

    /// `status`: [`STATUS_KERNEL_6_18`] as captured.
    pub fn status(self) -> FakePid {
        self.file("status", STATUS_KERNEL_6_18)
    }

    /// `limits`: [`LIMITS_KERNEL_6_18`] (RLIMIT_NOFILE 1024).
    pub fn limits(self) -> FakePid {
        self.file("limits", LIMITS_KERNEL_6_18)
    }

    /// `smaps`: [`SMAPS_KERNEL_6_18`] with the Rss of its `[heap]` mapping set to
    /// `heap_kib`: a heap estimate of `(heap_kib + 3136) KiB`.
    pub fn smaps(self, heap_kib: u64) -> FakePid {
        let mut in_heap = false;
        let text: String = SMAPS_KERNEL_6_18
            .lines()
            .map(|line| {
                if line.ends_with("[heap]") {
                    in_heap = true;
                } else if in_heap && line.starts_with("Rss:") {
                    in_heap = false;
                    return format!("Rss:            {heap_kib:>8} kB\n");
                }
                format!("{line}\n")
            })
            .collect();
        self.file("smaps", text)
    }

    /// `cmdline`: the arguments, each ended by a NUL as the kernel writes them.
    pub fn cmdline(self, args: &[&str]) -> FakePid {
        let text: String = args.iter().map(|a| format!("{a}\0")).collect();
        self.file("cmdline", &text)
    }

    /// `fd/N` → `link` for each pair (a link already there is replaced).
    pub fn fds<S: AsRef<Path>>(self, links: impl IntoIterator<Item = (i32, S)>) -> FakePid {
        for (fd, link) in links {
            let path = self.dir.join("fd").join(fd.to_string());
            if path.symlink_metadata().is_ok() {
                fs::remove_file(&path).unwrap();
            }
            std::os::unix::fs::symlink(link, path).unwrap();
        }
        self
    }

    /// Any other file, `rel` to the pid's directory (parents created), e.g. `net/tcp`.
    pub fn file(self, rel: &str, text: impl AsRef<[u8]>) -> FakePid {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, text).unwrap();
        self
    }

    /// `task/TID/`: its `stat` and `status` from the kernel text with this `tid`, `comm`
    /// and `state`, `status` carrying the context-switch counts `switches` (voluntary,
    /// nonvoluntary); `syscall` when given.
    pub fn task(
        self,
        tid: i32,
        comm: &str,
        state: char,
        switches: (u64, u64),
        syscall: Option<&str>,
    ) -> FakePid {
        let dir = format!("task/{tid}");
        let me = self
            .file(
                &format!("{dir}/stat"),
                stat_line(tid, comm, state, STARTTIME_KERNEL_6_18),
            )
            .file(&format!("{dir}/status"), status_text(comm, state, switches));
        match syscall {
            Some(text) => me.file(&format!("{dir}/syscall"), text),
            None => me,
        }
    }
}

/// [`STAT_KERNEL_6_18`] with `pid`, `comm`, `state` and `starttime` put in, ending in a
/// newline.
pub fn stat_line(pid: i32, comm: &str, state: char, starttime: u64) -> String {
    let (_, rest) = STAT_KERNEL_6_18.trim().rsplit_once(") ").unwrap();
    let mut fields: Vec<String> = rest.split(' ').map(String::from).collect();
    // `rest` starts at field 3 (state); starttime is field 22 (proc_pid_stat(5)).
    fields[0] = state.to_string();
    fields[19] = starttime.to_string();
    format!("{pid} ({comm}) {}\n", fields.join(" "))
}

/// [`STATUS_KERNEL_6_18`] with `Name`, `State` and the context-switch counts replaced.
fn status_text(comm: &str, state: char, (voluntary, nonvoluntary): (u64, u64)) -> String {
    let word = match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep",
        'T' => "stopped",
        't' => "tracing stop",
        'Z' => "zombie",
        'X' => "dead",
        _ => "idle",
    };
    let mut out = String::new();
    for line in STATUS_KERNEL_6_18.lines() {
        let key = line.split(':').next().unwrap_or("");
        let line = match key {
            "Name" => format!("Name:\t{comm}"),
            "State" => format!("State:\t{state} ({word})"),
            "voluntary_ctxt_switches" => format!("voluntary_ctxt_switches:\t{voluntary}"),
            "nonvoluntary_ctxt_switches" => {
                format!("nonvoluntary_ctxt_switches:\t{nonvoluntary}")
            }
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::stat::parse_stat;
    use crate::collect::status::parse_status;

    #[test]
    fn stat_and_status_keep_the_kernel_text_but_the_fields_put_in() {
        let kernel = parse_stat(STAT_KERNEL_6_18).unwrap();
        assert_eq!(kernel.starttime_ticks, STARTTIME_KERNEL_6_18);
        let st = parse_stat(&stat_line(7, "a b) c", 'Z', 99)).unwrap();
        assert_eq!((st.pid, st.comm.as_str(), st.state), (7, "a b) c", 'Z'));
        assert_eq!(st.starttime_ticks, 99);
        assert_eq!(st.num_threads, kernel.num_threads);
        let s = parse_status(&status_text("pool", 't', (10, 3)));
        assert_eq!((s.state, s.voluntary_ctxt_switches), (Some('t'), Some(10)));
        assert_eq!(s.nonvoluntary_ctxt_switches, Some(3));
    }

    #[test]
    fn a_pid_is_rewritten_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let proc = FakeProc::new(tmp.path());
        proc.pid(5).fds([(0, "/dev/null")]).stat('S', 1);
        let p = proc.pid(5).fds([(0, "pipe:[3]")]).stat('Z', 2);
        let link = fs::read_link(p.dir().join("fd/0")).unwrap();
        assert_eq!(link, Path::new("pipe:[3]"));
        let st = parse_stat(&fs::read_to_string(p.dir().join("stat")).unwrap()).unwrap();
        assert_eq!((st.state, st.starttime_ticks), ('Z', 2));
        assert_eq!(
            fs::read_to_string(tmp.path().join("stat")).unwrap(),
            BOOT_STAT
        );
    }
}
