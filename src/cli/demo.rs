//! `leakwatch demo`: the incident this tool exists for, on loopback, in under a minute.
//!
//! A built-in child (`leakwatch demo-child`) runs under a low RLIMIT_NOFILE and, every
//! tick, opens connections whose peer hangs up (CLOSE_WAIT, never closed) and parks another
//! worker in `recv()` on a connection whose peer never sends, until it hits EMFILE.
//! leakwatch samples it from the outside each tick and prints what it sees; at the end it
//! says when the 90 % line was crossed and how long before EMFILE that was.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Args;

use super::parse_duration;
use crate::collect::{CollectOptions, Collector};
use crate::demo_child::ChildProcess;
use crate::sample::{Limit, Sample};
use crate::target::{Resolver, Selector};
use crate::units::bytes;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Time between two looks.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// The child's soft RLIMIT_NOFILE.
    #[arg(long, default_value_t = 512)]
    pub nofile: u64,
    /// CLOSE_WAIT sockets the child leaks per tick.
    #[arg(long, default_value_t = 12)]
    pub close_wait_per_tick: u32,
    /// Give up after this long.
    #[arg(long, default_value = "110s", value_parser = parse_duration)]
    pub max: Duration,
}

/// The share of the fd limit that a level rule would fail at.
const WARN_RATIO: f64 = 0.9;

pub fn run(args: &DemoArgs) -> ExitCode {
    match demo(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leakwatch demo: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe()?;
    let max_seconds = args.max.as_secs() + 30;
    let mut child = ChildProcess::start(Command::new(exe).args([
        "demo-child",
        "--nofile",
        &args.nofile.to_string(),
        "--peers",
        "3",
        "--accept-thread",
        "--max-seconds",
        &max_seconds.to_string(),
    ]))?;
    let pid = child.pid();
    let target = Resolver::new("/proc", "/sys/fs/cgroup").resolve(&Selector::Pid(pid))?;
    println!(
        "leakwatch demo: pid {pid} leaks {} CLOSE_WAIT sockets and one stuck recv() worker per tick, \
         under RLIMIT_NOFILE={}",
        args.close_wait_per_tick, args.nofile
    );
    println!("peers: {}", join(&child.ready.listeners));
    println!("   time    fds/limit      close_wait  established  stuck  heap");

    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");
    let opts = CollectOptions {
        stuck_after: args.interval * 3,
        ..CollectOptions::default()
    };
    let started = Instant::now();
    let mut warned_at: Option<(Duration, u64)> = None;
    let mut emfile_at: Option<(Duration, String)> = None;
    while emfile_at.is_none() && started.elapsed() < args.max {
        let tick = Instant::now();
        for cmd in [
            format!("close-wait {}", args.close_wait_per_tick),
            "recv-workers 1".into(),
        ] {
            let answer = child.command(&cmd)?;
            if answer.starts_with("error") && emfile_at.is_none() {
                emfile_at = Some((started.elapsed(), answer));
            }
        }
        let s = collector.collect(target, &opts);
        let (used, limit) = fd_usage(&s);
        if warned_at.is_none() && limit > 0 && used as f64 >= WARN_RATIO * limit as f64 {
            warned_at = Some((started.elapsed(), used));
        }
        println!("{}", line(started.elapsed(), &s, warned_at.is_some()));
        std::thread::sleep(args.interval.saturating_sub(tick.elapsed()));
    }
    summary(warned_at, emfile_at, args);
    Ok(ExitCode::SUCCESS)
}

fn join(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// fds in use (allocated, else open) and the soft limit (0 when unknown or unlimited).
fn fd_usage(s: &Sample) -> (u64, u64) {
    let used = s.fds.as_ref().and_then(|f| f.in_use()).unwrap_or(0);
    let limit = match s.fd_limit.map(|l| l.soft) {
        Some(Limit::Limited(l)) => l,
        _ => 0,
    };
    (used, limit)
}

fn line(at: Duration, s: &Sample, over: bool) -> String {
    let (used, limit) = fd_usage(s);
    let pct = if limit > 0 {
        used as f64 * 100.0 / limit as f64
    } else {
        0.0
    };
    let tcp = s.tcp.as_ref();
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    format!(
        "  {:>4.0}s  {:>4}/{:<4} {:>3.0}%{}  {:>10}  {:>11}  {:>5}  {}",
        at.as_secs_f64(),
        used,
        limit,
        pct,
        if over { " !" } else { "  " },
        opt(tcp.map(|t| t.states.close_wait)),
        opt(tcp.map(|t| t.states.established)),
        opt(s.stuck.as_ref().map(|st| st.count)),
        s.heap
            .as_ref()
            .map_or("?".into(), |h| bytes(h.estimate_bytes)),
    )
}

fn summary(warned: Option<(Duration, u64)>, emfile: Option<(Duration, String)>, args: &DemoArgs) {
    println!();
    match &warned {
        Some((at, used)) => println!(
            "{:.0}s: fds crossed {:.0}% of the limit ({used}/{}): where a fds rule at max_ratio = {WARN_RATIO} fails",
            at.as_secs_f64(),
            WARN_RATIO * 100.0,
            args.nofile
        ),
        None => println!("fds never crossed {:.0}% of the limit", WARN_RATIO * 100.0),
    }
    match &emfile {
        Some((at, why)) => println!(
            "{:.0}s: the child could no longer open sockets: {why}",
            at.as_secs_f64()
        ),
        None => println!("the child did not run out within {:?}", args.max),
    }
    if let (Some((w, _)), Some((e, _))) = (warned, emfile) {
        println!(
            "lead time: {:.0}s between the 90% line and EMFILE, at this leak rate",
            e.saturating_sub(w).as_secs_f64()
        );
    }
    println!(
        "\n(`leakwatch run` will serve this as /healthz with trend rules, that fail earlier still: \
         not available yet)"
    );
}
