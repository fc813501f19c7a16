//! From a [`Sample`] to one series' value and limit ([`read`]), and back ([`put`], for
//! backtest's replay), both through the series' row of [`table::TABLE`]. Natural limits: `fds` → soft
//! RLIMIT_NOFILE; `cgroup_memory` (the working set) → `memory.max`, else `memory.high`;
//! `threads` → what `pids.max` leaves after the cgroup's other tasks (each the lowest along
//! the cgroup's path: an ancestor's is named in the source); `rss`/`anon`/`heap` →
//! the cgroup's memory limit when there is one; any series → the rule's configured `limit`
//! when it has no natural one.

use std::borrow::Cow;

use super::spec::{Rule, Series};
use crate::error::UnknownKind;
use crate::sample::{CgroupPids, Limit, Sample, Source};

use super::SeriesStatus;

pub mod table;
#[cfg(test)]
mod tests;

/// Which collector feeds a series (its reason is the series' reason when unknown).
pub fn collector(series: Series) -> Source {
    series.def().source
}

/// Whether the series is counted in bytes (for formatting).
pub fn is_bytes(series: Series) -> bool {
    series.def().bytes
}

/// Put `series`' value and limit (as a recording or Prometheus has them: 0 is no limit)
/// into `sample` where the collector would: [`read`] gives them back.
pub fn put(sample: &mut Sample, series: Series, value: Option<f64>, limit: Option<f64>) {
    let n = value.map(|v| v.max(0.0).round() as u64);
    let limit = limit.map(|l| match l.round() as u64 {
        0 => Limit::Unlimited,
        l => Limit::Limited(l),
    });
    (series.def().put)(sample, n, limit);
}

/// The value and limit of `series` in `sample`; its trend is left for the caller, who holds
/// the window.
pub fn read(sample: &Sample, series: Series, rule: &Rule) -> SeriesStatus {
    let value: Option<u64> = (series.def().read)(sample);
    let mut obs = SeriesStatus {
        series,
        value: value.map(|v| v as f64),
        limit: None,
        limit_source: None,
        unknown: None,
        not_collected: false,
        limit_unknown: None,
        trend: None,
        seconds_to_exhaustion: None,
        leak_suspected: false,
    };
    if value.is_none() {
        match sample.unknown.get(&collector(series)) {
            Some(u) if u.kind == UnknownKind::NotCollected => obs.not_collected = true,
            Some(u) if matches!(u.kind, UnknownKind::Missing | UnknownKind::Unsupported) => {}
            Some(u) => obs.unknown = Some(u.message.clone()),
            None => {}
        }
    }
    let natural = natural_limit(sample, series);
    match natural {
        NaturalLimit::Limited(v, source) => {
            obs.limit = Some(v as f64);
            obs.limit_source = Some(source.into_owned());
        }
        NaturalLimit::Unknown(why) if rule.limit.is_none() => obs.limit_unknown = Some(why),
        _ => {
            if let Some(l) = rule.limit {
                obs.limit = Some(l);
                obs.limit_source = Some("config".to_string());
            }
        }
    }
    obs
}

enum NaturalLimit {
    Limited(u64, Cow<'static, str>),
    /// There is none (unlimited, or the series has no natural limit).
    None,
    /// There is one but it could not be read.
    Unknown(String),
}

fn natural_limit(sample: &Sample, series: Series) -> NaturalLimit {
    // As for values: a source the machine does not offer is no limit; one that failed
    // (permissions, I/O, parse) is an unknown limit.
    let unknown = |c: Source| {
        sample
            .unknown
            .get(&c)
            .filter(|u| !matches!(u.kind, UnknownKind::Missing | UnknownKind::Unsupported))
            .map_or(NaturalLimit::None, |u| {
                NaturalLimit::Unknown(u.message.clone())
            })
    };
    match series {
        Series::Fds => match sample.fd_limit.as_ref().map(|l| l.soft) {
            Some(Limit::Limited(n)) => NaturalLimit::Limited(n, "RLIMIT_NOFILE (soft)".into()),
            Some(Limit::Unlimited) => NaturalLimit::None,
            None => unknown(Source::Limits),
        },
        Series::CgroupMemory | Series::Rss | Series::Anon | Series::Heap => {
            let Some(cg) = sample.cgroup_memory.as_ref() else {
                return unknown(Source::CgroupMemory);
            };
            // On an ancestor (a slice, a pod): its path follows the file's name.
            let source = |file: &'static str, from: &Option<String>| match from {
                Some(path) => format!("{file} of {path}").into(),
                None => file.into(),
            };
            match (cg.max, cg.high) {
                (Some(Limit::Limited(n)), _) => {
                    NaturalLimit::Limited(n, source("memory.max", &cg.max_from))
                }
                (_, Some(Limit::Limited(n))) => {
                    NaturalLimit::Limited(n, source("memory.high", &cg.high_from))
                }
                _ => NaturalLimit::None,
            }
        }
        Series::Threads => match &sample.cgroup_pids {
            Some(pids) => threads_limit(pids, sample.threads.as_ref().map(|t| t.count)),
            None => unknown(Source::CgroupPids),
        },
        Series::TcpEstablished
        | Series::TcpCloseWait
        | Series::StuckThreads
        | Series::TcpStalled
        | Series::TcpCloseWaitAged
        | Series::CgroupSock => NaturalLimit::None,
    }
}

/// What `pids.max` leaves for the target's threads. The pids controller counts every task of
/// the cgroup, so tasks of other processes there (workers, helpers) use the same allowance:
/// the target's threads run out at `pids.max - (pids.current - threads)`.
fn threads_limit(pids: &CgroupPids, threads: Option<u64>) -> NaturalLimit {
    let Some(Limit::Limited(max)) = pids.max else {
        return NaturalLimit::None;
    };
    // An ancestor's pids.max counts every task below it: the target cgroup's and its
    // siblings'.
    let (current, of, holder) = match &pids.max_from {
        Some(a) => (Some(a.current), format!(" of {}", a.path), "below it"),
        None => (pids.current, String::new(), "in the cgroup"),
    };
    let others = match (current, threads) {
        (Some(current), Some(threads)) => current.saturating_sub(threads),
        _ => 0,
    };
    if others == 0 {
        return NaturalLimit::Limited(max, format!("pids.max{of}").into());
    }
    NaturalLimit::Limited(
        max.saturating_sub(others),
        format!("pids.max {max}{of} less {others} tasks of other processes {holder}").into(),
    )
}
