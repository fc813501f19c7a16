//! Pure parsers for cgroupfs text and `/proc/PID/cgroup` (no I/O).
//!
//! Formats (Documentation/admin-guide/cgroup-v2.rst "Interface Files", cgroup-v1/memory.rst,
//! accounting/psi.rst, proc(5)):
//! - single values: `123`, or `max` for "no limit" (v2 and the v1 pids controller);
//! - flat keyed: one `key value` per line (`memory.stat`, `memory.events`, v1 `oom_control`);
//! - PSI: `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and a `full` line;
//! - `/proc/PID/cgroup`: `hierarchy-ID:controller-list:cgroup-path` per hierarchy.

use std::collections::BTreeMap;

use crate::sample::{Limit, Pressure, PressureLine};

/// v1 limits at or above this are the kernel's "no limit" (PAGE_COUNTER_MAX pages, rounded
/// down to a page: 9223372036854771712 with 4 KiB pages), not a real limit.
pub const V1_UNLIMITED_FROM: u64 = 1 << 60;

/// The cgroups of one process, as its `/proc/PID/cgroup` names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcCgroup {
    /// The `0::PATH` line: the process's cgroup in the v2 (unified) hierarchy.
    pub v2: Option<String>,
    /// The v1 hierarchies: their controllers (`memory`, `cpu`, `name=systemd`) and path.
    pub v1: Vec<V1Hierarchy>,
}

/// One v1 line, e.g. `3:cpu,cpuacct:/system.slice/app.service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub id: u32,
    pub controllers: Vec<String>,
    pub path: String,
}

impl ProcCgroup {
    /// The path of the v1 hierarchy that has `controller` bound, if any.
    pub fn v1_path(&self, controller: &str) -> Option<&str> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.path.as_str())
    }
}

/// Parse `/proc/PID/cgroup`. Lines of another form are skipped. The path is everything after
/// the second colon (a cgroup name may itself contain colons).
pub fn parse_proc_cgroup(text: &str) -> ProcCgroup {
    let mut out = ProcCgroup::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(id) = id.parse::<u32>() else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        if id == 0 && controllers.is_empty() {
            out.v2 = Some(path.to_string());
        } else {
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            out.v1.push(V1Hierarchy {
                id,
                controllers,
                path: path.to_string(),
            });
        }
    }
    out
}

/// A flat keyed file: `key value` lines with an unsigned value. Other lines are skipped.
pub fn flat_keyed(text: &str) -> BTreeMap<&str, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) {
            if let Ok(v) = v.parse() {
                out.insert(k, v);
            }
        }
    }
    out
}

/// A file holding one unsigned number (`memory.current`, `pids.current`).
pub fn parse_u64(text: &str) -> Result<u64, String> {
    let t = text.trim();
    t.parse()
        .map_err(|_| format!("expected a number, got {:?}", clip(t)))
}

/// A limit file: a number, or `max` for none (`memory.max`, `memory.high`, `pids.max`).
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    match text.trim() {
        "max" => Ok(Limit::Unlimited),
        t => t
            .parse()
            .map(Limit::Limited)
            .map_err(|_| format!("expected a number or \"max\", got {:?}", clip(t))),
    }
}

/// A v1 `memory.limit_in_bytes` value: the kernel's huge "no limit" number is `Unlimited`.
pub fn v1_limit(bytes: u64) -> Limit {
    if bytes >= V1_UNLIMITED_FROM {
        Limit::Unlimited
    } else {
        Limit::Limited(bytes)
    }
}

/// A PSI file (`memory.pressure`). `some` is required; `full` is absent on old kernels.
pub fn parse_pressure(text: &str) -> Result<Pressure, String> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let slot = match it.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        *slot = Some(parse_pressure_fields(it).map_err(|e| format!("{}: {e}", clip(line)))?);
    }
    let some = some.ok_or_else(|| "no \"some\" line".to_string())?;
    Ok(Pressure { some, full })
}

fn parse_pressure_fields<'a>(
    fields: impl Iterator<Item = &'a str>,
) -> Result<PressureLine, String> {
    let (mut avg10, mut avg60, mut avg300, mut total) = (None, None, None, None);
    for field in fields {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let bad = || format!("bad value {v:?} for {k}");
        match k {
            "avg10" => avg10 = Some(parse_avg(v).ok_or_else(bad)?),
            "avg60" => avg60 = Some(parse_avg(v).ok_or_else(bad)?),
            "avg300" => avg300 = Some(parse_avg(v).ok_or_else(bad)?),
            "total" => total = Some(v.parse::<u64>().map_err(|_| bad())?),
            _ => {}
        }
    }
    match (avg10, avg60, avg300, total) {
        (Some(avg10), Some(avg60), Some(avg300), Some(total_us)) => Ok(PressureLine {
            avg10,
            avg60,
            avg300,
            total_us,
        }),
        _ => Err("expected avg10, avg60, avg300 and total".to_string()),
    }
}

fn parse_avg(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0)
}

/// At most 40 characters of odd text, for error messages.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../../tests/fixtures/cgroup/", $name))
        };
    }

    const HYBRID: &str = fixture!("proc_cgroup_hybrid_kernel_6_18");
    const V1_SYSTEMD: &str = fixture!("proc_cgroup_v1_systemd_kernel_6_x");
    const V2: &str = fixture!("proc_cgroup_v2_kernel_6_1");
    const V2_SIDECAR: &str = fixture!("proc_cgroup_v2_sidecar_kernel_6_1");
    const STAT_V1: &str = fixture!("memory_stat_v1_kernel_6_18");
    const STAT_V2: &str = fixture!("memory_stat_v2_kernel_6_1");
    const EVENTS_V2: &str = fixture!("memory_events_v2_kernel_6_1");
    const OOM_CONTROL_V1: &str = fixture!("memory_oom_control_v1_kernel_6_18");
    const PRESSURE_UNIFIED: &str = fixture!("memory_pressure_unified_kernel_6_18");
    const PRESSURE_BUSY: &str = fixture!("memory_pressure_v2_busy_kernel_6_1");
    const LIMIT_V1_UNLIMITED: &str = fixture!("memory_limit_in_bytes_v1_unlimited_kernel_6_18");
    const LIMIT_V1_256M: &str = fixture!("memory_limit_in_bytes_v1_256m_kernel_6_18");

    const ALL: [&str; 23] = [
        HYBRID,
        V1_SYSTEMD,
        V2,
        V2_SIDECAR,
        STAT_V1,
        STAT_V2,
        EVENTS_V2,
        OOM_CONTROL_V1,
        PRESSURE_UNIFIED,
        PRESSURE_BUSY,
        LIMIT_V1_UNLIMITED,
        LIMIT_V1_256M,
        fixture!("memory_failcnt_v1_kernel_6_18"),
        fixture!("memory_usage_in_bytes_v1_kernel_6_18"),
        fixture!("pids_current_v1_kernel_6_18"),
        fixture!("pids_max_v1_unlimited_kernel_6_18"),
        fixture!("memory_current_v2_kernel_6_1"),
        fixture!("memory_max_v2_kernel_6_1"),
        fixture!("memory_high_v2_kernel_6_1"),
        fixture!("memory_max_v2_unlimited_kernel_6_1"),
        fixture!("pids_current_v2_kernel_6_1"),
        fixture!("pids_max_v2_kernel_6_1"),
        fixture!("cgroup_controllers_v2_service_kernel_6_1"),
    ];

    #[test]
    fn proc_cgroup_hybrid_host() {
        let cg = parse_proc_cgroup(HYBRID);
        assert_eq!(cg.v2.as_deref(), Some("/"));
        assert_eq!(
            cg.v1_path("memory"),
            Some("/process_api/94baf7261315d89eeb2a8b6eb89cfca7")
        );
        assert_eq!(cg.v1_path("pids"), Some("/"));
        assert_eq!(cg.v1_path("name=systemd"), Some("/"));
        assert_eq!(cg.v1.len(), 9);
    }

    #[test]
    fn proc_cgroup_v1_with_shared_hierarchies() {
        let cg = parse_proc_cgroup(V1_SYSTEMD);
        assert_eq!(cg.v1_path("memory"), Some("/system.slice/app.service"));
        assert_eq!(cg.v1_path("pids"), Some("/system.slice/app.service"));
        assert_eq!(cg.v1_path("cpuacct"), Some("/system.slice/app.service"));
        assert_eq!(cg.v1_path("net_prio"), Some("/"));
        assert_eq!(cg.v1_path("cpu,cpuacct"), None);
        assert_eq!(cg.v2.as_deref(), Some("/system.slice/app.service"));
        let cpu = cg.v1.iter().find(|h| h.id == 8).unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
    }

    #[test]
    fn proc_cgroup_v2_and_sidecar() {
        let cg = parse_proc_cgroup(V2);
        assert_eq!(cg.v2.as_deref(), Some("/system.slice/lwt-hold.service"));
        assert!(cg.v1.is_empty());
        assert_eq!(cg.v1_path("memory"), None);
        let cg = parse_proc_cgroup(V2_SIDECAR);
        assert_eq!(cg.v2.as_deref(), Some("/../lwt-ns.service"));
    }

    #[test]
    fn proc_cgroup_odd_lines() {
        let cg = parse_proc_cgroup("garbage\n0::\nx:memory:/a\n4:memory:/a:b\n\n0::/c\n");
        assert_eq!(cg.v1_path("memory"), Some("/a:b"));
        assert_eq!(cg.v2.as_deref(), Some("/c"));
        assert_eq!(cg.v1.len(), 1);
    }

    #[test]
    fn memory_stat_v2_keys() {
        let s = flat_keyed(STAT_V2);
        assert_eq!(s.get("anon"), Some(&26_140_672));
        assert_eq!(s.get("file"), Some(&8_388_608));
        assert_eq!(s.get("sock"), Some(&0));
        assert_eq!(s.get("inactive_file"), Some(&8_388_608));
        assert_eq!(s.get("thp_collapse_alloc"), Some(&10));
        assert_eq!(s.len(), STAT_V2.lines().count());
    }

    #[test]
    fn memory_stat_v1_keys() {
        let s = flat_keyed(STAT_V1);
        assert_eq!(s.get("total_rss"), Some(&1_826_816));
        assert_eq!(s.get("total_cache"), Some(&3_436_544));
        assert_eq!(s.get("total_inactive_file"), Some(&1_351_680));
        assert_eq!(
            s.get("hierarchical_memory_limit"),
            Some(&9_223_372_036_854_771_712)
        );
    }

    #[test]
    fn events_and_oom_control() {
        let e = flat_keyed(EVENTS_V2);
        let got: Vec<_> = ["low", "high", "max", "oom", "oom_kill"]
            .iter()
            .map(|k| e.get(k).copied())
            .collect();
        assert_eq!(got, [Some(0), Some(1003), Some(0), Some(0), Some(0)]);
        let o = flat_keyed(OOM_CONTROL_V1);
        assert_eq!(o.get("oom_kill"), Some(&0));
        assert_eq!(o.get("under_oom"), Some(&0));
    }

    #[test]
    fn single_values_and_limits() {
        assert_eq!(
            parse_u64(fixture!("memory_current_v2_kernel_6_1")),
            Ok(35_164_160)
        );
        assert_eq!(
            parse_limit(fixture!("memory_max_v2_kernel_6_1")),
            Ok(Limit::Limited(314_572_800))
        );
        assert_eq!(
            parse_limit(fixture!("memory_max_v2_unlimited_kernel_6_1")),
            Ok(Limit::Unlimited)
        );
        assert_eq!(
            parse_limit(fixture!("pids_max_v1_unlimited_kernel_6_18")),
            Ok(Limit::Unlimited)
        );
        assert!(parse_limit("12x").is_err());
        assert!(parse_u64("max").is_err());
        assert!(parse_u64("").is_err());
    }

    #[test]
    fn v1_no_limit_is_unlimited() {
        let huge = parse_u64(LIMIT_V1_UNLIMITED).unwrap();
        assert_eq!(huge, 9_223_372_036_854_771_712);
        assert_eq!(v1_limit(huge), Limit::Unlimited);
        // 64 KiB pages round PAGE_COUNTER_MAX down further; still no limit.
        assert_eq!(v1_limit(9_223_372_036_854_710_272), Limit::Unlimited);
        let real = parse_u64(LIMIT_V1_256M).unwrap();
        assert_eq!(v1_limit(real), Limit::Limited(256 << 20));
    }

    #[test]
    fn pressure() {
        let zero = PressureLine::default();
        assert_eq!(
            parse_pressure(PRESSURE_UNIFIED),
            Ok(Pressure {
                some: zero.clone(),
                full: Some(zero)
            })
        );
        assert_eq!(
            parse_pressure(PRESSURE_BUSY),
            Ok(Pressure {
                some: PressureLine {
                    avg10: 37.63,
                    avg60: 7.83,
                    avg300: 1.67,
                    total_us: 5_140_748
                },
                full: Some(PressureLine {
                    avg10: 34.99,
                    avg60: 7.26,
                    avg300: 1.55,
                    total_us: 4_810_685
                }),
            })
        );
        let only_some = "some avg10=0.50 avg60=0.10 avg300=0.00 total=77\n";
        assert_eq!(parse_pressure(only_some).map(|p| p.full), Ok(None));
        assert!(parse_pressure("full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").is_err());
        assert!(parse_pressure("some avg10=x avg60=0.00 avg300=0.00 total=0\n").is_err());
        assert!(parse_pressure("some avg10=NaN avg60=0.00 avg300=0.00 total=0\n").is_err());
        assert!(parse_pressure("some avg10=0.00\n").is_err());
    }

    #[test]
    fn every_prefix_parses_without_panic() {
        for text in ALL {
            for end in (0..=text.len()).filter(|i| text.is_char_boundary(*i)) {
                let t = &text[..end];
                let _ = parse_proc_cgroup(t);
                let _ = flat_keyed(t);
                let _ = parse_u64(t);
                let _ = parse_limit(t);
                let _ = parse_pressure(t);
            }
        }
    }
}
