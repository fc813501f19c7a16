//! `/proc/PID/smaps_rollup` and `/proc/PID/smaps` (proc(5), Documentation/filesystems/proc.rst).
//!
//! The heap estimate is the Rss of `[heap]` (the brk heap) plus anonymous private read-write
//! mappings (malloc arenas and mmap'd large allocations) that are not thread stacks. A thread
//! stack is recognised by the PROT_NONE guard mapping directly below it (glibc and most
//! runtimes put one there); a malloc arena's PROT_NONE reserve lies *above* its rw part.

use std::path::Path;

use crate::error::{read_to_string, ReadError};
use crate::sample::{Heap, SmapsRollup};

/// Largest PROT_NONE mapping below an rw mapping that is still taken for a stack guard.
const MAX_GUARD_BYTES: u64 = 1 << 20;

fn kib_field(line: &str) -> Option<(&str, Option<u64>)> {
    let (key, value) = line.split_once(':')?;
    let bytes = value
        .trim()
        .strip_suffix("kB")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .and_then(|v| v.checked_mul(1024));
    Some((key, bytes))
}

/// Parse `smaps_rollup`.
pub fn parse_smaps_rollup(text: &str) -> SmapsRollup {
    let mut r = SmapsRollup::default();
    for (key, bytes) in text.lines().filter_map(kib_field) {
        match key {
            "Rss" => r.rss_bytes = bytes,
            "Pss" => r.pss_bytes = bytes,
            "Pss_Anon" => r.pss_anon_bytes = bytes,
            "Pss_File" => r.pss_file_bytes = bytes,
            "Pss_Shmem" => r.pss_shmem_bytes = bytes,
            "Private_Dirty" => r.private_dirty_bytes = bytes,
            "Anonymous" => r.anonymous_bytes = bytes,
            "Swap" => r.swap_bytes = bytes,
            _ => {}
        }
    }
    r
}

pub fn read_smaps_rollup(pid_dir: &Path) -> Result<SmapsRollup, ReadError> {
    Ok(parse_smaps_rollup(&read_to_string(
        &pid_dir.join("smaps_rollup"),
    )?))
}

/// One mapping's header line and its Rss.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping<'a> {
    start: u64,
    end: u64,
    perms: &'a str,
    inode: &'a str,
    name: &'a str,
    rss_bytes: u64,
}

/// A header: `start-end perms offset dev inode [name]`.
fn parse_header(line: &str) -> Option<Mapping<'_>> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let perms = it.next()?;
    let _offset = it.next()?;
    let _dev = it.next()?;
    let inode = it.next()?;
    let name = it.next().unwrap_or("").trim();
    if perms.len() != 4 || end < start {
        return None;
    }
    Some(Mapping {
        start,
        end,
        perms,
        inode,
        name,
        rss_bytes: 0,
    })
}

fn is_anonymous(m: &Mapping) -> bool {
    m.inode == "0" && (m.name.is_empty() || m.name.starts_with("[anon:"))
}

/// Parse `smaps` into the heap estimate.
pub fn parse_smaps_heap(text: &str) -> Heap {
    let mut maps: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        if let Some(m) = parse_header(line) {
            maps.push(m);
        } else if let (Some(last), Some(("Rss", Some(b)))) = (maps.last_mut(), kib_field(line)) {
            last.rss_bytes = b;
        }
    }
    let mut heap = Heap::default();
    for (i, m) in maps.iter().enumerate() {
        if m.name == "[heap]" {
            heap.brk_rss_bytes = heap.brk_rss_bytes.saturating_add(m.rss_bytes);
            continue;
        }
        if m.perms != "rw-p" || !is_anonymous(m) {
            continue;
        }
        let guard_below = i.checked_sub(1).map(|j| &maps[j]).is_some_and(|g| {
            g.end == m.start
                && g.perms == "---p"
                && is_anonymous(g)
                && g.end - g.start <= MAX_GUARD_BYTES
        });
        if guard_below {
            heap.stack_mappings += 1;
        } else {
            heap.anon_rss_bytes = heap.anon_rss_bytes.saturating_add(m.rss_bytes);
            heap.anon_mappings += 1;
        }
    }
    heap.estimate_bytes = heap.brk_rss_bytes.saturating_add(heap.anon_rss_bytes);
    heap
}

pub fn read_heap(pid_dir: &Path) -> Result<Heap, ReadError> {
    Ok(parse_smaps_heap(&read_to_string(&pid_dir.join("smaps"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP_KERNEL_6_18: &str =
        include_str!("../../tests/fixtures/proc/smaps_rollup_kernel_6_18");

    #[test]
    fn smaps_rollup_kernel_6_18() {
        let r = parse_smaps_rollup(ROLLUP_KERNEL_6_18);
        assert_eq!(r.rss_bytes, Some(1760 * 1024));
        assert_eq!(r.pss_bytes, Some(518 * 1024));
        assert_eq!(r.pss_anon_bytes, Some(104 * 1024));
        assert_eq!(r.pss_file_bytes, Some(414 * 1024));
        assert_eq!(r.anonymous_bytes, Some(104 * 1024));
        assert_eq!(r.swap_bytes, Some(0));
    }

    const SMAPS: &str = "\
55d535d02000-55d535d23000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Rss:                  40 kB
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
Rss:                 100 kB
7f0000021000-7f0004000000 ---p 00000000 00:00 0 
Rss:                   0 kB
7f1000000000-7f1000001000 ---p 00000000 00:00 0 
Rss:                   0 kB
7f1000001000-7f1000801000 rw-p 00000000 00:00 0 
Rss:                  16 kB
7f2000000000-7f2000100000 rw-p 00000000 00:00 0                          [anon:scratch]
Rss:                1024 kB
7f3000000000-7f3000001000 r--p 00000000 fd:01 1234                       /usr/lib/libc.so.6
Rss:                   4 kB
7ffda9c2f000-7ffda9c50000 rw-p 00000000 00:00 0                          [stack]
Rss:                  12 kB
";

    #[test]
    fn heap_is_brk_plus_anonymous_rw_without_stacks() {
        let h = parse_smaps_heap(SMAPS);
        assert_eq!(
            h,
            Heap {
                estimate_bytes: (40 + 100 + 1024) * 1024,
                brk_rss_bytes: 40 * 1024,
                anon_rss_bytes: (100 + 1024) * 1024,
                anon_mappings: 2,
                stack_mappings: 1,
                age_ms: 0,
            }
        );
    }

    /// `leakwatch demo-child --recv-threads 2 --accept-thread --grow-mib 3`: four thread
    /// stacks and five sigaltstacks (each with a guard page below), four malloc arenas,
    /// 3 MiB of large allocations. Expected values computed separately from the same text.
    #[test]
    fn smaps_rust_threads_kernel_6_18() {
        let text = include_str!("../../tests/fixtures/proc/smaps_rust_threads_kernel_6_18");
        let h = parse_smaps_heap(text);
        assert_eq!(h.brk_rss_bytes, 80 * 1024);
        assert_eq!(h.anon_rss_bytes, 3136 * 1024);
        assert_eq!(h.anon_mappings, 8);
        assert_eq!(h.stack_mappings, 9);
        assert!(h.estimate_bytes >= 3 << 20, "the 3 MiB the child allocated");
    }

    #[test]
    fn absurd_sizes_saturate_instead_of_overflowing() {
        let huge = "Rss: 18014398509481983 kB\n"; // (2^64 - 1) / 1024
        let text = format!("1-2 rw-p 0 00:00 0 [heap]\n{huge}3-4 rw-p 0 00:00 0\n{huge}");
        assert_eq!(parse_smaps_heap(&text).estimate_bytes, u64::MAX);
    }

    #[test]
    fn odd_smaps_text_does_not_panic() {
        for cut in 0..SMAPS.len() {
            let _ = parse_smaps_heap(&SMAPS[..cut]);
        }
        assert_eq!(parse_smaps_heap("garbage\nRss: 5 kB\n"), Heap::default());
        assert_eq!(
            parse_smaps_heap("2-1 rw-p 0 0 0\nRss: 5 kB\n"),
            Heap::default()
        );
    }
}
