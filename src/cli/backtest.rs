//! `leakwatch backtest`: read a service's history from Prometheus (or a recording of
//! `leakwatch run --record`), replay it through the judge with the config's rules, and say when `/healthz` would have turned 503. Exit 0
//! with the report, 2 when the history cannot be read (server unreachable, nothing
//! matched, an answer of the wrong shape) or the arguments are bad. With `--fleet K`, the
//! targets are also replayed as one fleet sharing K restart slots, for sizing K.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::parse_duration;
use crate::backtest::fleet::{self, FleetReport, FleetSetup};
use crate::backtest::mapping::{self, Overrides};
use crate::backtest::prometheus::Range;
use crate::backtest::{recording, render, replay, svg, Setup, TargetHistory, TargetReport};
use crate::client::Server;
use crate::config::Config;
use crate::fleet::FleetConfig;

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Prometheus' base URL (http://HOST:PORT[/PREFIX]).
    #[arg(long, value_name = "URL", required_unless_present = "recording", conflicts_with = "recording", requires_all = ["selector", "start", "end"])]
    pub prometheus: Option<String>,
    /// A recording of `leakwatch run --record FILE` instead (repeatable, oldest first:
    /// FILE.1 then FILE).
    #[arg(long, value_name = "FILE")]
    pub recording: Vec<PathBuf>,
    /// Label matchers applied to every metric read, e.g. '{job="api"}'.
    #[arg(long = "match", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Start of the history: RFC 3339 (2026-12-01T08:00:00Z) or unix seconds.
    #[arg(long, value_parser = parse_time)]
    pub start: Option<u64>,
    /// End of the history: RFC 3339 or unix seconds.
    #[arg(long, value_parser = parse_time)]
    pub end: Option<u64>,
    /// Time between judged points (default: the config's `interval`).
    #[arg(long, value_parser = parse_duration)]
    pub step: Option<Duration>,
    /// Config file: its `[judge]` and a target's rules judge the history.
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Which of the config's targets' rules to use (needed when it has several).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Read a series with this PromQL instead: SERIES=PROMQL or SERIES_limit=PROMQL
    /// (repeatable; the selector is not applied to it).
    #[arg(long = "query", value_name = "SERIES=PROMQL")]
    pub queries: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Draw one SVG per target into DIR: each series against its limit, the restarts,
    /// and where /healthz would have answered 503.
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
    /// Also replay the targets as the N replicas of one fleet sharing K restart slots
    /// (timings from the config's [fleet]): deferrals, overrides, lead kept, the most
    /// restarting at once, and whether ceil(N/K) restarts fit in the lead. With recordings,
    /// each file (FILE.1 with FILE) is one replica.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub fleet: Option<u32>,
    /// With --fleet: how long the simulated kubelet takes from a replica's go to its new
    /// process healthy (failed probes, grace, startup); default 30s, failureThreshold 3 ×
    /// periodSeconds 10.
    #[arg(long, value_name = "DURATION", requires = "fleet", value_parser = parse_duration)]
    pub fleet_restart_cost: Option<Duration>,
}

/// Write each target's SVG into `dir`; the paths written.
fn write_svgs(dir: &std::path::Path, reports: &[TargetReport]) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("--svg {}: {e}", dir.display()))?;
    let mut written: Vec<String> = Vec::new();
    for r in reports {
        let mut path = dir.join(svg::file_name(r));
        let mut n = 1;
        while written.contains(&path.display().to_string()) {
            n += 1;
            path = dir.join(format!("{n}-{}", svg::file_name(r)));
        }
        std::fs::write(&path, svg::render(r)).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// Unix milliseconds from RFC 3339 (`Z` or `±HH:MM`) or unix seconds.
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| (secs * 1000.0).round() as u64)
            .ok_or_else(|| format!("{s:?}: a time before 1970"));
    }
    let bad =
        |e: String| format!("{s:?}: expected RFC 3339 (2026-12-01T08:00:00Z) or unix seconds: {e}");
    let (local, offset_s) = split_offset(s);
    let t = humantime::parse_rfc3339_weak(local).map_err(|e| bad(e.to_string()))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| bad(e.to_string()))?
        .as_millis() as i64;
    u64::try_from(ms - offset_s * 1000).map_err(|e| bad(e.to_string()))
}

/// `2026-12-01T09:00:00+01:00` → (`2026-12-01T09:00:00`, 3600).
fn split_offset(s: &str) -> (&str, i64) {
    if let Some(local) = s.strip_suffix(['Z', 'z']) {
        return (local, 0);
    }
    let Some(i) = s.len().checked_sub(6) else {
        return (s, 0);
    };
    let (local, off) = s.split_at(i);
    let sign = match off.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return (s, 0),
    };
    let hm: Vec<i64> = off[1..].split(':').filter_map(|p| p.parse().ok()).collect();
    match hm.as_slice() {
        [h, m] if local.contains('T') || local.contains(' ') => (local, sign * (h * 3600 + m * 60)),
        _ => (s, 0),
    }
}

/// What the config gives: the judging, the default step, and its `[fleet]`.
type FromConfig = (Setup, Duration, Option<FleetConfig>);

/// The judging, the default step and `[fleet]` from the config, if any.
fn setup(args: &BacktestArgs) -> Result<FromConfig, String> {
    let Some(file) = &args.config else {
        return Ok((Setup::default(), Config::default().interval, None));
    };
    let config = Config::load(file).map_err(|e| e.to_string())?;
    let target = match (&args.target, config.targets.as_slice()) {
        (Some(name), ts) => Some(
            ts.iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| format!("--target {name}: no such target in {}", file.display()))?,
        ),
        (None, []) => None,
        (None, [one]) => Some(one),
        (None, ts) => {
            let names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
            return Err(format!(
                "{} has {} targets ({}): name the one whose rules to use with --target",
                file.display(),
                ts.len(),
                names.join(", ")
            ));
        }
    };
    let setup = match target {
        Some(t) => Setup {
            judge: t.judge.clone(),
            rules: t.rules.clone(),
        },
        None => Setup {
            judge: config.judge.clone(),
            rules: Vec::new(),
        },
    };
    Ok((setup, config.interval, config.fleet.clone()))
}

/// The histories from Prometheus, and notes on what was read.
fn from_prometheus(
    args: &BacktestArgs,
    url: &str,
    step: Duration,
) -> Result<(Vec<TargetHistory>, Vec<String>), String> {
    let (Some(selector), Some(start), Some(end)) = (&args.selector, args.start, args.end) else {
        return Err("--prometheus needs --match, --start and --end".into());
    };
    if end <= start {
        return Err("--end must be after --start".into());
    }
    let mut overrides = Overrides::default();
    for q in &args.queries {
        overrides.add(q).map_err(|e| e.to_string())?;
    }
    let server = Server::parse(url).map_err(|e| e.to_string())?;
    let range = Range {
        start_ms: start,
        end_ms: end,
        step_ms: step.as_millis() as u64,
    };
    let fetched =
        mapping::fetch(&server, selector, &overrides, range).map_err(|e| format!("{e:#}"))?;
    let mut notes = fetched.used.clone();
    let (targets, unplaced) = mapping::group(fetched);
    notes.extend(unplaced);
    Ok((targets, notes))
}

/// The histories of recordings, cut to --start/--end when given. With --fleet each
/// recording (FILE.1 with FILE) is one replica's: the same target in two of them is two
/// replicas, told apart by a `recording` label.
fn from_recordings(args: &BacktestArgs) -> Result<(Vec<TargetHistory>, Vec<String>), String> {
    let files: Vec<&std::path::Path> = args.recording.iter().map(PathBuf::as_path).collect();
    let groups = match args.fleet {
        Some(_) => recording::replicas(&files),
        None => vec![files],
    };
    let (mut histories, mut notes) = (Vec::new(), Vec::new());
    for group in &groups {
        let (mut lines, n) = recording::read(group).map_err(|e| e.to_string())?;
        notes.extend(n);
        lines.retain(|l| args.start.is_none_or(|s| l.t >= s) && args.end.is_none_or(|e| l.t <= e));
        let mut found = recording::histories(&lines);
        if let Some(file) = group.last().filter(|_| groups.len() > 1) {
            for h in &mut found {
                h.labels
                    .insert("recording".into(), file.display().to_string());
            }
        }
        histories.extend(found);
    }
    if histories.is_empty() {
        return Err("the recording holds nothing between --start and --end".into());
    }
    Ok((histories, notes))
}

/// The reports, the fleet's when asked for, and notes on what was read.
type Backtest = (Vec<TargetReport>, Option<FleetReport>, Vec<String>);

/// Read and replay; `Err` is the message for exit 2.
fn backtest(args: &BacktestArgs) -> Result<Backtest, String> {
    let (setup, interval, fleet_cfg) = setup(args)?;
    let step = args.step.unwrap_or(interval);
    if step.is_zero() {
        return Err("--step must be more than 0".into());
    }
    let (targets, mut notes) = match &args.prometheus {
        Some(url) => from_prometheus(args, url, step)?,
        None => from_recordings(args)?,
    };
    let per_window = setup.judge.window.as_millis() / step.as_millis().max(1);
    if args.prometheus.is_some() && per_window < u128::from(setup.judge.min_samples) {
        notes.push(format!(
            "a {} window holds {per_window} points at a {} step, fewer than min_samples = {}: \
             trends are never trusted; use a shorter --step",
            humantime::format_duration(setup.judge.window),
            humantime::format_duration(step),
            setup.judge.min_samples
        ));
    }
    let reports = targets.iter().map(|t| replay(t, &setup)).collect();
    let fleet = args.fleet.map(|k| {
        let mut cfg = fleet_cfg.unwrap_or_else(|| FleetConfig::new("backtest", k));
        cfg.max_concurrent = k;
        let fleet = FleetSetup {
            cfg,
            restart_cost: args
                .fleet_restart_cost
                .unwrap_or(fleet::DEFAULT_RESTART_COST),
            tick: step.min(fleet::MAX_TICK),
        };
        fleet::simulate(&targets, &setup, &fleet)
    });
    Ok((reports, fleet, notes))
}

pub fn run(args: &BacktestArgs) -> ExitCode {
    let svgs = |reports: &[TargetReport]| match &args.svg {
        Some(dir) => write_svgs(dir, reports),
        None => Ok(Vec::new()),
    };
    let (reports, fleet, mut notes) = match backtest(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match svgs(&reports) {
        Ok(paths) => notes.extend(paths.into_iter().map(|p| format!("wrote {p}"))),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    if args.json {
        let mut json = render::report_json(&reports);
        if let (Some(f), Some(o)) = (&fleet, json.as_object_mut()) {
            o.insert("fleet".into(), fleet::render::fleet_json(f));
        }
        println!("{json}");
        for n in &notes {
            eprintln!("note: {n}");
        }
        return ExitCode::SUCCESS;
    }
    let first = reports
        .iter()
        .filter_map(|r| r.ticks.first())
        .map(|t| t.at_ms)
        .min();
    let last = reports
        .iter()
        .filter_map(|r| r.ticks.last())
        .map(|t| t.at_ms)
        .max();
    println!(
        "backtest {} .. {}, {} target(s)",
        render::rfc3339(args.start.or(first).unwrap_or(0)),
        render::rfc3339(args.end.or(last).unwrap_or(0)),
        reports.len()
    );
    for n in &notes {
        println!("  {n}");
    }
    for r in &reports {
        println!();
        print!("{}", render::target_text(r));
    }
    if let Some(f) = &fleet {
        println!();
        print!("{}", fleet::render::fleet_text(f));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_unix_seconds() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.25"), Ok(1_700_000_000_250));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T21:13:20-01:00"),
            Ok(1_700_000_000_000)
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("-5").is_err());
    }
}
