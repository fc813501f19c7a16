//! `/proc/PID/status` and `/proc/PID/task/TID/status` (proc(5)): memory and context switches.
//!
//! `Key:\tvalue` lines; memory values are `NNN kB` (KiB). Kernel threads and zombies lack
//! the `Vm*`/`Rss*` lines, so each field is `None` when absent, never 0.

use std::path::Path;

use crate::error::{read_to_string, ReadError};
use crate::sample::Memory;

/// The fields of `status` that leakwatch uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub name: Option<String>,
    pub state: Option<char>,
    /// Real uid.
    pub uid: Option<u32>,
    pub threads: Option<u64>,
    pub memory: Memory,
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
}

fn kib(value: &str) -> Option<u64> {
    let v = value.trim().strip_suffix("kB")?.trim();
    v.parse::<u64>().ok()?.checked_mul(1024)
}

/// Parse the text of a `status` file. Unknown and malformed lines are skipped.
pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let m = &mut s.memory;
        match key {
            "Name" => s.name = Some(value.to_string()),
            "State" => s.state = value.chars().next(),
            "Uid" => s.uid = value.split_whitespace().next().and_then(|v| v.parse().ok()),
            "Threads" => s.threads = value.parse().ok(),
            "VmRSS" => m.rss_bytes = kib(value),
            "RssAnon" => m.anon_bytes = kib(value),
            "RssFile" => m.file_bytes = kib(value),
            "RssShmem" => m.shmem_bytes = kib(value),
            "VmSwap" => m.swap_bytes = kib(value),
            "VmHWM" => m.peak_rss_bytes = kib(value),
            "VmSize" => m.virtual_bytes = kib(value),
            "voluntary_ctxt_switches" => s.voluntary_ctxt_switches = value.parse().ok(),
            "nonvoluntary_ctxt_switches" => s.nonvoluntary_ctxt_switches = value.parse().ok(),
            _ => {}
        }
    }
    s
}

/// Read and parse `DIR/status`.
pub fn read_status(dir: &Path) -> Result<Status, ReadError> {
    Ok(parse_status(&read_to_string(&dir.join("status"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_KERNEL_6_18: &str = include_str!("../../tests/fixtures/proc/status_kernel_6_18");
    const STATUS_ZOMBIE: &str = include_str!("../../tests/fixtures/proc/status_zombie_kernel_6_18");

    #[test]
    fn status_kernel_6_18() {
        let s = parse_status(STATUS_KERNEL_6_18);
        assert_eq!(s.name.as_deref(), Some("sleep"));
        assert_eq!(s.state, Some('S'));
        assert_eq!(s.uid, Some(0));
        assert_eq!(s.threads, Some(1));
        assert_eq!(
            s.memory,
            Memory {
                rss_bytes: Some(1760 * 1024),
                anon_bytes: Some(104 * 1024),
                file_bytes: Some(1656 * 1024),
                shmem_bytes: Some(0),
                swap_bytes: Some(0),
                peak_rss_bytes: Some(1760 * 1024),
                virtual_bytes: Some(2920 * 1024),
            }
        );
        assert_eq!(s.voluntary_ctxt_switches, Some(4));
        assert_eq!(s.nonvoluntary_ctxt_switches, Some(0));
    }

    #[test]
    fn zombie_has_no_memory_lines_so_memory_is_unknown_not_zero() {
        let s = parse_status(STATUS_ZOMBIE);
        assert_eq!(s.state, Some('Z'));
        assert_eq!(s.memory, Memory::default());
    }

    #[test]
    fn odd_lines_are_skipped() {
        let s = parse_status(
            "VmRSS:\tlots kB\nno colon here\nVmSwap: 12 kB\nVmHWM: 99999999999999999999 kB\n",
        );
        assert_eq!(s.memory.rss_bytes, None);
        assert_eq!(s.memory.swap_bytes, Some(12 * 1024));
        assert_eq!(s.memory.peak_rss_bytes, None);
    }
}
