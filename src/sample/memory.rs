//! The process's memory ([`Source::Memory`](super::Source::Memory),
//! [`Source::SmapsRollup`](super::Source::SmapsRollup), [`Source::Heap`](super::Source::Heap)):
//! `/proc/PID/status`, `smaps_rollup`, and the heap estimated from `smaps`.

use serde::{Deserialize, Serialize};

/// Memory from `/proc/PID/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// VmRSS
    pub rss_bytes: Option<u64>,
    /// RssAnon
    pub anon_bytes: Option<u64>,
    /// RssFile
    pub file_bytes: Option<u64>,
    /// RssShmem
    pub shmem_bytes: Option<u64>,
    /// VmSwap
    pub swap_bytes: Option<u64>,
    /// VmHWM: the peak RSS.
    pub peak_rss_bytes: Option<u64>,
    /// VmSize
    pub virtual_bytes: Option<u64>,
}

/// `/proc/PID/smaps_rollup`: the sums of `smaps` without its per-mapping cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmapsRollup {
    pub rss_bytes: Option<u64>,
    pub pss_bytes: Option<u64>,
    pub pss_anon_bytes: Option<u64>,
    pub pss_file_bytes: Option<u64>,
    pub pss_shmem_bytes: Option<u64>,
    pub private_dirty_bytes: Option<u64>,
    pub anonymous_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
}

/// The outside-in estimate of what malloc holds, from `/proc/PID/smaps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heap {
    /// `brk_rss_bytes + anon_rss_bytes`.
    pub estimate_bytes: u64,
    /// Rss of the `[heap]` (brk) mapping.
    pub brk_rss_bytes: u64,
    /// Rss of anonymous private read-write mappings that are not stacks (malloc arenas and
    /// large allocations).
    pub anon_rss_bytes: u64,
    /// How many mappings went into `anon_rss_bytes`.
    pub anon_mappings: u64,
    /// Anonymous rw mappings left out as thread stacks (a guard page right below them).
    pub stack_mappings: u64,
    /// How old this estimate is, ms: 0 when smaps was read this tick; more on the ticks
    /// between its reads (every `smaps_every`), which keep the last one read of the same
    /// process (and say `not_collected` for [`Source::Heap`](super::Source::Heap) in
    /// `Sample::unknown`: the judge takes no new point from them).
    #[serde(default)]
    pub age_ms: u64,
}
