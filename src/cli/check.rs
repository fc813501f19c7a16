//! `leakwatch check`: sample a target for a while, judge it like the daemon does, print the
//! verdict, and exit 0 healthy, 1 unhealthy, 2 unknown or error — for exec probes, cron and
//! monitoring plugins. Levels are judged from the first sample; trends only when the
//! duration covers the judge's `min_samples` and `min_span`.
//!
//! It says which mode it judged in. A target in observe mode (`mode = "observe"`) answers
//! as its `/healthz` does: a failing verdict is healthy (exit 0) with a `WOULD FAIL` line
//! per failing rule, since a script probing with `check` must not restart what the daemon
//! would not.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::{parse_duration, SelectorArgs};
use crate::daemon::Pipeline;
use crate::judge::observe::WOULD_FAIL;
use crate::judge::Enforcement;
use crate::snapshot::TargetStatus;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file (its targets and judging).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub selector: SelectorArgs,
    /// Sample for this long before judging ("30s"); 0 judges one sample.
    #[arg(long = "for", value_parser = parse_duration, default_value = "0s")]
    pub for_: Duration,
    /// Time between samples.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Ok,
    Unhealthy,
    Unknown,
}

impl Exit {
    fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Unhealthy => 1,
            Exit::Unknown => 2,
        }
    }
}

pub fn run(args: &CheckArgs) -> ExitCode {
    let mut config =
        match super::run::load(args.config.as_ref(), &args.selector, Default::default()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    let interval = args.interval.max(Duration::from_millis(100));
    let ticks = (args.for_.as_millis() / interval.as_millis()) as u32 + 1;
    // A level seen on every sample of a short check fails it: hysteresis cannot wait for
    // more ticks than the check takes.
    for t in &mut config.targets {
        t.judge.fail_after = t.judge.fail_after.min(ticks).max(1);
        // Actions belong to the daemon: a probe or a cron check never signals or writes.
        t.actions = crate::config::ActionsConfig::default();
    }
    // ... nor records: a recording is the daemon's.
    config.record = None;
    let mut pipeline = Pipeline::new(config);
    let mut last = Vec::new();
    for i in 0..ticks {
        let started = Instant::now();
        last = pipeline.tick();
        if i + 1 < ticks {
            std::thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    }
    let outcome = outcome(&last);
    if args.json {
        print_json(outcome, &last);
    } else {
        print_text(outcome, &last);
    }
    ExitCode::from(outcome.code())
}

/// Unhealthy on any failing target; unknown when a target is missing or a judged value
/// could not be read; else ok.
pub fn outcome(targets: &[TargetStatus]) -> Exit {
    if targets.iter().any(|t| !t.verdict().healthy) {
        Exit::Unhealthy
    } else if targets.iter().any(|t| !t.found || has_unknown(t)) {
        Exit::Unknown
    } else {
        Exit::Ok
    }
}

fn has_unknown(t: &TargetStatus) -> bool {
    t.judged
        .rules
        .iter()
        .any(|r| r.state == crate::judge::RuleState::Unknown)
}

fn print_text(outcome: Exit, targets: &[TargetStatus]) {
    let word = match outcome {
        Exit::Ok => "OK",
        Exit::Unhealthy => "UNHEALTHY",
        Exit::Unknown => "UNKNOWN",
    };
    println!("leakwatch check: {word} ({})", judged_in(targets));
    for t in targets {
        let who = match t.target {
            Some(id) => format!("{} (pid {})", t.name, id.pid),
            None => t.name.clone(),
        };
        println!("  {who}: {}", summary(t));
        for line in &t.verdict().failing {
            println!("    FAIL {line}");
        }
        for note in &t.verdict().notes {
            match note.strip_prefix(WOULD_FAIL) {
                Some(line) => println!("    WOULD FAIL {line}"),
                None => println!("    note {note}"),
            }
        }
    }
}

/// `enforce mode`, `observe mode; would fail: app`, or per target when they differ
/// (`enforce mode: app; observe mode: worker`).
pub fn judged_in(targets: &[TargetStatus]) -> String {
    let of = |m: Enforcement| -> Vec<&str> {
        targets
            .iter()
            .filter(|t| t.mode == m)
            .map(|t| t.name.as_str())
            .collect()
    };
    let mut out = match (of(Enforcement::Enforce), of(Enforcement::Observe)) {
        (_, o) if o.is_empty() => "enforce mode".to_string(),
        (e, _) if e.is_empty() => "observe mode".to_string(),
        (e, o) => format!(
            "enforce mode: {}; observe mode: {}",
            e.join(", "),
            o.join(", ")
        ),
    };
    let would: Vec<&str> = targets
        .iter()
        .filter(|t| t.verdict().would_fail())
        .map(|t| t.name.as_str())
        .collect();
    if !would.is_empty() {
        out += &format!("; would fail: {}", would.join(", "));
    }
    out
}

/// `fds 37/1024, threads 5` from the judged series.
fn summary(t: &TargetStatus) -> String {
    if !t.found {
        return t
            .missing_reason
            .clone()
            .unwrap_or_else(|| "not found".into());
    }
    let parts: Vec<String> = t
        .judged
        .series
        .iter()
        .filter_map(|s| {
            let v = s.value?;
            let bytes = crate::judge::series::is_bytes(s.series);
            let fmt = |x: f64| crate::judge::rules::amount(x, bytes);
            Some(match s.limit {
                Some(l) => format!("{} {}/{}", s.series, fmt(v), fmt(l)),
                None => format!("{} {}", s.series, fmt(v)),
            })
        })
        .collect();
    if parts.is_empty() {
        "no values".into()
    } else {
        parts.join(", ")
    }
}

fn print_json(outcome: Exit, targets: &[TargetStatus]) {
    #[derive(Serialize)]
    struct Out<'a> {
        result: Exit,
        exit_code: u8,
        targets: Vec<Target<'a>>,
    }
    #[derive(Serialize)]
    struct Target<'a> {
        name: &'a str,
        found: bool,
        pid: Option<i32>,
        mode: Enforcement,
        healthy: bool,
        /// Observe mode answers 200 for a failing verdict: its lines are in `notes`.
        would_fail: bool,
        failing: &'a [String],
        notes: &'a [String],
        series: &'a [crate::judge::SeriesStatus],
    }
    let out = Out {
        result: outcome,
        exit_code: outcome.code(),
        targets: targets
            .iter()
            .map(|t| Target {
                name: &t.name,
                found: t.found,
                pid: t.target.map(|id| id.pid),
                mode: t.mode,
                healthy: t.verdict().healthy,
                would_fail: t.verdict().would_fail(),
                failing: &t.verdict().failing,
                notes: &t.verdict().notes,
                series: &t.judged.series,
            })
            .collect(),
    };
    match serde_json::to_string_pretty(&out) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::metrics::example_snapshot;

    #[test]
    fn it_says_which_mode_it_judged_in_and_what_would_fail() {
        // app enforced (and failing: 503), worker observed (missing).
        let mut targets = example_snapshot().targets;
        assert_eq!(
            judged_in(&targets),
            "enforce mode: app; observe mode: worker"
        );
        assert_eq!(outcome(&targets), Exit::Unhealthy);
        targets[1].mode = Enforcement::Enforce;
        assert_eq!(judged_in(&targets), "enforce mode");
        // Both observed: app's failing verdict answers 200, and check exits like it.
        for t in &mut targets {
            t.mode = Enforcement::Observe;
            t.judged.verdict = std::mem::take(&mut t.judged.verdict).observed();
        }
        assert_eq!(judged_in(&targets), "observe mode; would fail: app");
        assert_eq!(outcome(&targets[..1]), Exit::Ok);
    }
}
