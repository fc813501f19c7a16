//! `leakwatch inspect`: two looks at one process, `--stuck-after` apart, then a report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{parse_duration, SelectorArgs};
use crate::actions::bundle::{self, render::history_row, BundleInput};
use crate::collect::{CollectOptions, Collector};
use crate::config::actions::BundleConfig;
use crate::config::TargetConfig;
use crate::error::{Unknown, UnknownKind};
use crate::report;
use crate::sample::{Source, TargetState};
use crate::target::{Resolver, Selector};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The process to inspect (or use a selector flag).
    #[arg(value_name = "PID")]
    pub process: Option<i32>,
    #[command(flatten)]
    pub selector: SelectorArgs,
    /// Print the sample as JSON.
    #[arg(long)]
    pub json: bool,
    /// Wait this long between the two looks; a worker blocked in one socket call for the
    /// whole wait is reported stuck. "0s" takes one look and leaves stuck workers unknown.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub stuck_after: Duration,
    /// Also write a diagnostics bundle (the one `[actions.bundle]` writes on a flip) under
    /// this directory, and print its path.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// The cap on the bundle's size (with --bundle).
    #[arg(long, default_value = "50MiB", value_parser = parse_size, requires = "bundle")]
    pub bundle_max_bytes: u64,
    /// How many peers to list per state.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
    #[arg(long, default_value = "/sys/fs/cgroup", hide = true)]
    pub cgroup_root: PathBuf,
}

pub fn run(args: &InspectArgs) -> ExitCode {
    let selector = match (args.process, args.selector.selector()) {
        (Some(pid), None) => Selector::Pid(pid),
        (None, Some(sel)) => sel,
        (None, None) => {
            eprintln!(
                "leakwatch inspect: give a PID or a selector (--pid, --name, --cmdline-regex, ...)"
            );
            return ExitCode::from(2);
        }
        (Some(_), Some(_)) => {
            eprintln!("leakwatch inspect: give a PID or a selector, not both");
            return ExitCode::from(2);
        }
    };
    let resolver = Resolver::new(&args.proc_root, &args.cgroup_root);
    let target = match resolver.resolve(&selector) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("leakwatch inspect: {e}");
            return ExitCode::from(2);
        }
    };
    let mut collector = Collector::new(&args.proc_root, &args.cgroup_root);
    let opts = CollectOptions {
        smaps: true,
        top_peers: args.top,
        stuck_after: args.stuck_after,
    };
    let mut sample = collector.collect(target, &opts);
    let mut history = vec![history_row(&sample)];
    if args.stuck_after.is_zero() {
        sample.stuck = None;
        sample.unknown.insert(
            Source::Stuck,
            Unknown::new(
                UnknownKind::NotCollected,
                "stuck workers need two looks (--stuck-after)",
            ),
        );
    } else if sample.state == TargetState::Running {
        std::thread::sleep(args.stuck_after);
        let second = collector.collect(target, &opts);
        if second.state != TargetState::Gone {
            history.push(history_row(&second));
            sample = second;
        }
    }
    if let Some(dir) = &args.bundle {
        if sample.state != TargetState::Running {
            eprintln!("leakwatch inspect: {target} is gone: no bundle written");
            return ExitCode::from(2);
        }
        let cfg = BundleConfig {
            dir: dir.clone(),
            max_bytes: args.bundle_max_bytes,
            // On demand: nothing of a human's is removed.
            keep: u32::MAX,
        };
        let name = TargetConfig::from_selector(selector.clone()).name;
        let input = BundleInput {
            name: &name,
            reason: "on demand (leakwatch inspect --bundle)",
            sample: &sample,
            judged: None,
            history: &history,
        };
        match bundle::make(&args.proc_root, &args.cgroup_root, &cfg, &input) {
            Ok(w) => eprintln!(
                "leakwatch inspect: bundle written to {} ({})",
                w.path.display(),
                crate::units::bytes(w.bytes)
            ),
            Err(e) => {
                eprintln!("leakwatch inspect: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&sample) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("leakwatch inspect: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report::render(&sample));
    }
    if sample.state == TargetState::Gone {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

fn parse_size(s: &str) -> Result<u64, String> {
    let v = crate::config::values::parse_quantity(s)?;
    let min = crate::config::actions::MIN_BUNDLE_BYTES;
    if v < min as f64 {
        return Err(format!("at least 16KiB, got {s:?}"));
    }
    Ok(v as u64)
}
