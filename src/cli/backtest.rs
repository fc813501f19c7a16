//! `leakwatch backtest`: read a service's history from Prometheus (or a recording of
//! `leakwatch run --record`), replay it through the judge with the config's rules, and say when `/healthz` would have turned 503. Exit 0
//! with the report, 2 when the history cannot be read (server unreachable, nothing
//! matched, an answer of the wrong shape) or the arguments are bad.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::parse_duration;
use crate::backtest::mapping::{self, Overrides};
use crate::backtest::prometheus::Range;
use crate::backtest::{recording, render, replay, svg, Setup, TargetHistory, TargetReport};
use crate::client::Server;
use crate::config::Config;

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

/// The judging and the default step from the config, if any.
fn setup(args: &BacktestArgs) -> Result<(Setup, Duration), String> {
    let Some(file) = &args.config else {
        return Ok((Setup::default(), Config::default().interval));
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
    Ok((setup, config.interval))
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

/// The histories of recordings, cut to --start/--end when given.
fn from_recordings(args: &BacktestArgs) -> Result<(Vec<TargetHistory>, Vec<String>), String> {
    let files: Vec<&std::path::Path> = args.recording.iter().map(PathBuf::as_path).collect();
    let (mut lines, notes) = recording::read(&files).map_err(|e| e.to_string())?;
    lines.retain(|l| args.start.is_none_or(|s| l.t >= s) && args.end.is_none_or(|e| l.t <= e));
    if lines.is_empty() {
        return Err("the recording holds nothing between --start and --end".into());
    }
    Ok((recording::histories(&lines), notes))
}

/// Read and replay; `Err` is the message for exit 2.
fn backtest(args: &BacktestArgs) -> Result<(Vec<TargetReport>, Vec<String>), String> {
    let (setup, interval) = setup(args)?;
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
    Ok((reports, notes))
}

pub fn run(args: &BacktestArgs) -> ExitCode {
    let svgs = |reports: &[TargetReport]| match &args.svg {
        Some(dir) => write_svgs(dir, reports),
        None => Ok(Vec::new()),
    };
    let (reports, mut notes) = match backtest(args) {
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
        println!("{}", render::report_json(&reports));
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
