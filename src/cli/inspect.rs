//! `leakwatch inspect`: two looks at one process, `--stuck-after` apart, then a report;
//! with `--from URL`, what a running `leakwatch run` judged of it over its window ([`from`]).

mod from;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{parse_duration, SelectorArgs};
use crate::actions::bundle::{self, render::history_row, BundleInput, HistoryRow};
use crate::collect::{CollectOptions, Collector};
use crate::config::actions::BundleConfig;
use crate::config::TargetConfig;
use crate::error::{Unknown, UnknownKind};
use crate::report;
use crate::sample::{Sample, Source, TargetId, TargetState};
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
    /// whole wait is reported stuck, a socket that acknowledged nothing while data waited
    /// stalled. "0s" takes one look and leaves both unknown.
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
    /// Also show what a running `leakwatch run` judged of this process over its window
    /// (its /status at URL, e.g. http://127.0.0.1:9717): the verdict, leak warnings, and
    /// each judged series' slope and time to exhaustion.
    #[arg(long, value_name = "URL", value_parser = from::parse_url)]
    pub from: Option<from::DaemonUrl>,
    /// With --from: a file holding the bearer token leakwatch's /status requires (the one
    /// its [http] token_file names).
    #[arg(long, value_name = "FILE", requires = "from")]
    pub token_file: Option<PathBuf>,
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
    #[arg(long, default_value = "/sys/fs/cgroup", hide = true)]
    pub cgroup_root: PathBuf,
}

pub fn run(args: &InspectArgs) -> ExitCode {
    match inspect(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leakwatch inspect: {e}");
            ExitCode::from(2)
        }
    }
}

/// Resolve, look (twice with `--stuck-after`), write the bundle if asked, print; `Err` is
/// the message of a failure.
fn inspect(args: &InspectArgs) -> Result<ExitCode, String> {
    let selector = match (args.process, args.selector.selector()) {
        (Some(pid), None) => Selector::Pid(pid),
        (None, Some(sel)) => sel,
        (None, None) => {
            return Err("give a PID or a selector (--pid, --name, --cmdline-regex, ...)".into())
        }
        (Some(_), Some(_)) => return Err("give a PID or a selector, not both".into()),
    };
    let resolver = Resolver::new(&args.proc_root, &args.cgroup_root);
    let target = resolver.resolve(&selector).map_err(|e| e.to_string())?;
    let (sample, history) = look(args, target);
    if let Some(dir) = &args.bundle {
        if sample.state != TargetState::Running {
            return Err(format!("{target} is gone: no bundle written"));
        }
        write_bundle(args, dir, &selector, &sample, &history)?;
    }
    // Asked after the looks, so the daemon's verdict is as fresh as the sample.
    let daemon = args
        .from
        .as_ref()
        .map(|url| from::ask(url, args.token_file.as_deref(), target));
    if args.json {
        println!("{}", json(&sample, daemon.as_ref())?);
    } else {
        print!("{}", report::render(&sample));
        if let Some(d) = &daemon {
            print!("{}", from::render(d));
        }
    }
    if sample.state == TargetState::Gone {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// The sample as JSON; with `--from`, what the daemon said under the key `daemon`.
fn json(sample: &Sample, daemon: Option<&from::FromDaemon>) -> Result<String, String> {
    let mut v = serde_json::to_value(sample).map_err(|e| e.to_string())?;
    if let (Some(d), serde_json::Value::Object(map)) = (daemon, &mut v) {
        let d = serde_json::to_value(d).map_err(|e| e.to_string())?;
        map.insert("daemon".into(), d);
    }
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}

/// One look, or two `--stuck-after` apart (stuck workers need two); the samples as history.
fn look(args: &InspectArgs, target: TargetId) -> (Sample, Vec<HistoryRow>) {
    let mut collector = Collector::new(&args.proc_root, &args.cgroup_root);
    let opts = CollectOptions {
        smaps: true,
        top_peers: args.top,
        stuck_after: args.stuck_after,
        // The two looks are --stuck-after apart: a socket that acknowledged nothing in
        // between, with data queued, is stalled (and a CLOSE_WAIT seen in both is aged).
        stall_after: args.stuck_after,
        // A person looking wants every fd by type, fresh.
        fd_types_every: Duration::ZERO,
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
        if sample.tcp_stalled.take().is_some() {
            sample.unknown.insert(
                Source::TcpStall,
                Unknown::new(
                    UnknownKind::NotCollected,
                    "stalled sockets need two looks (--stuck-after)",
                ),
            );
        }
    } else if sample.state == TargetState::Running {
        std::thread::sleep(args.stuck_after);
        let second = collector.collect(target, &opts);
        if second.state != TargetState::Gone {
            history.push(history_row(&second));
            sample = second;
        }
    }
    (sample, history)
}

/// `--bundle DIR`: write one bundle on demand, and say where.
fn write_bundle(
    args: &InspectArgs,
    dir: &std::path::Path,
    selector: &Selector,
    sample: &Sample,
    history: &[HistoryRow],
) -> Result<(), String> {
    let cfg = BundleConfig {
        dir: dir.to_path_buf(),
        max_bytes: args.bundle_max_bytes,
        // On demand: nothing of a human's is removed.
        keep: u32::MAX,
    };
    let name = TargetConfig::from_selector(selector.clone()).name;
    let input = BundleInput {
        name: &name,
        reason: "on demand (leakwatch inspect --bundle)",
        sample,
        judged: None,
        history,
    };
    let w = bundle::make(&args.proc_root, &args.cgroup_root, &cfg, &input)?;
    eprintln!(
        "leakwatch inspect: bundle written to {} ({})",
        w.path.display(),
        crate::units::bytes(w.bytes)
    );
    Ok(())
}

fn parse_size(s: &str) -> Result<u64, String> {
    let v = crate::config::values::parse_quantity(s)?;
    let min = crate::config::actions::MIN_BUNDLE_BYTES;
    if v < min as f64 {
        return Err(format!("at least 16KiB, got {s:?}"));
    }
    Ok(v as u64)
}
