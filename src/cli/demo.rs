//! `leakwatch demo`: the incident this tool exists for, on loopback, in about a minute.
//!
//! A built-in child (`leakwatch demo-child`) runs under RLIMIT_NOFILE=512 and, every tick,
//! opens connections whose peer hangs up (CLOSE_WAIT, never closed) and parks another
//! worker in `recv()` on a connection whose peer never sends, until it hits EMFILE. The
//! real daemon watches it (same loop, same judging, same HTTP server as `leakwatch run`);
//! each line shows what leakwatch sees and what `GET /healthz` really answers. The summary
//! says when `/healthz` turned 503, when the child hit EMFILE, and the lead time as a
//! kubelet sees it: from the start of the last unbroken run of 503 before EMFILE (a kubelet
//! restarts only after `failureThreshold` failed probes in a row), and whether the verdict
//! flapped (went back to 200 in between) and how many times.
//!
//! The demo judges in enforce mode; `--observe` shows observe mode, the first step of
//! adopting leakwatch: `/healthz` stays 200 and says what would fail, and the summary says
//! when it would have turned 503.

use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Args;

use super::parse_duration;
use crate::client;
use crate::config::actions::BundleConfig;
use crate::config::{Config, TargetConfig};
use crate::daemon;
use crate::demo_child::ChildProcess;
use crate::judge::observe::WOULD_FAIL;
use crate::judge::rules::{approx_secs, rate_text};
use crate::judge::{Enforcement, SeriesStatus};
use crate::judge::{JudgeConfig, Rule, Series};
use crate::snapshot::Snapshot;
use crate::target::Selector;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Time between two ticks (leakwatch's interval and the child's leak step).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// The child's soft RLIMIT_NOFILE.
    #[arg(long, default_value_t = 512)]
    pub nofile: u64,
    /// CLOSE_WAIT sockets the child leaks per tick (plus one stuck recv() worker).
    #[arg(long, default_value_t = 8)]
    pub close_wait_per_tick: u32,
    /// Where leakwatch serves HTTP (another free port is used if this one is taken).
    #[arg(long, default_value = "127.0.0.1:9717")]
    pub listen: SocketAddr,
    /// Give up after this long.
    #[arg(long, default_value = "110s", value_parser = parse_duration)]
    pub max: Duration,
    /// Write a diagnostics bundle under this directory when /healthz turns 503 (the
    /// `[actions.bundle]` of a real config).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<std::path::PathBuf>,
    /// Judge in observe mode (`mode = "observe"`): /healthz stays 200 and says what would
    /// fail, as when leakwatch is first adopted.
    #[arg(long)]
    pub observe: bool,
}

impl DemoArgs {
    fn mode(&self) -> Enforcement {
        if self.observe {
            Enforcement::Observe
        } else {
            Enforcement::Enforce
        }
    }
}

/// The share of the fd limit that the level rule fails at.
const LEVEL: f64 = 0.9;

pub fn run(args: &DemoArgs) -> ExitCode {
    match demo(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leakwatch demo: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The demo's judging: the defaults' rules on a one-minute scale (a real service gets
/// `window = "10m"`, `exhaust_within = "30m"`).
fn demo_config(pid: i32, args: &DemoArgs) -> Config {
    let judge = JudgeConfig {
        window: Duration::from_secs(60),
        min_samples: 10,
        min_span: args.interval * 9,
        warmup: Duration::ZERO,
        fail_after: 2,
        recover_after: 3,
        stuck_after: args.interval * 3,
        stall_after: args.interval * 3,
        ..JudgeConfig::default()
    };
    let mut target = TargetConfig::from_selector(Selector::Pid(pid));
    target.name = "demo-child".into();
    target.judge = judge.clone();
    target.rules = vec![(
        Series::Fds,
        Rule {
            max_ratio: Some(LEVEL),
            exhaust_within: Some(Duration::from_secs(60)),
            ..Rule::default()
        },
    )];
    if let Some(dir) = &args.bundle {
        target.actions.bundle = Some(BundleConfig {
            dir: dir.clone(),
            ..BundleConfig::default()
        });
    }
    target.mode = args.mode();
    Config {
        mode: args.mode(),
        listen: args.listen,
        interval: args.interval,
        judge,
        targets: vec![target],
        ..Config::default()
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
    let mut config = demo_config(pid, args);
    let daemon = match daemon::spawn(config.clone()) {
        Ok(d) => d,
        Err(e) => {
            println!("({} is taken: {e:#}; using a free port)", args.listen);
            config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            daemon::spawn(config)?
        }
    };
    intro(args, pid, daemon.addr);

    let started = Instant::now();
    let mut events = Events::default();
    while events.emfile.is_none() && started.elapsed() < args.max {
        let tick = Instant::now();
        for cmd in [
            format!("close-wait {}", args.close_wait_per_tick),
            "recv-workers 1".into(),
        ] {
            let answer = child.command(&cmd)?;
            if answer.starts_with("error") && events.emfile.is_none() {
                events.emfile = Some((started.elapsed(), answer));
            }
        }
        // Let the daemon's tick that follows the leak step land first.
        std::thread::sleep(args.interval / 2);
        let snap = daemon.snapshots.borrow().clone();
        let ask = format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            daemon.addr
        );
        let (code, body) = client::exchange(daemon.addr, ask.as_bytes(), Duration::from_secs(2))
            .unwrap_or((0, String::new()));
        events.record(started.elapsed(), &snap, code, &body);
        println!("{}", line(started.elapsed(), &snap, code));
        std::thread::sleep(args.interval.saturating_sub(tick.elapsed()));
    }
    drop(child);
    let snap = daemon.snapshots.borrow().clone();
    daemon.shutdown()?;
    let code = events.summary(args);
    if args.bundle.is_some() {
        let results = snap
            .targets
            .first()
            .and_then(|t| t.actions.last.as_ref())
            .map(|f| f.results.clone())
            .unwrap_or_default();
        match results.first() {
            Some(r) => println!("diagnostics: {}", r.detail),
            None => println!("diagnostics: no bundle was written"),
        }
    }
    Ok(code)
}

/// What runs, where leakwatch serves, the rules and the mode; then the table's header.
fn intro(args: &DemoArgs, pid: i32, addr: SocketAddr) {
    let base = format!("http://{addr}");
    println!(
        "leakwatch demo: child pid {pid} leaks {} CLOSE_WAIT sockets and one worker stuck in recv() \
         per tick, under RLIMIT_NOFILE={}",
        args.close_wait_per_tick, args.nofile
    );
    println!("leakwatch serves {base}/healthz, {base}/metrics and {base}/status (try curl now)");
    println!(
        "rules: fds at {:.0}% of the limit, or exhausting it within 1m (a trend needs 10 samples)",
        LEVEL * 100.0
    );
    println!("{}\n", mode_line(args.mode()));
    println!(
        "  time   fds/limit       close_wait  estab  stuck  fds growth  exhausted in  /healthz"
    );
}

/// The mode the demo judges in, and what it means for /healthz.
fn mode_line(mode: Enforcement) -> &'static str {
    match mode {
        Enforcement::Enforce => {
            "mode: enforce (a failing verdict answers 503; --observe shows observe mode)"
        }
        Enforcement::Observe => {
            "mode: observe (/healthz stays 200 and says what would fail: the first step of adoption)"
        }
    }
}

/// What happened when, for the summary.
#[derive(Default)]
struct Events {
    unhealthy: Option<(Duration, String)>,
    /// Observe mode: when /healthz first answered 200 for a failing verdict, and its lines.
    would_fail: Option<(Duration, String)>,
    level: Option<(Duration, f64)>,
    emfile: Option<(Duration, String)>,
    /// The probes before EMFILE, as a kubelet sees them.
    probes: Probes,
}

/// The runs of 503 that `GET /healthz` answered, probe by probe, until the child ran out.
#[derive(Debug, Default, PartialEq)]
struct Probes {
    /// Runs of 503 begun (flips a kubelet saw).
    runs: usize,
    /// When the current run of 503 began; `None` after any other answer.
    run_from: Option<Duration>,
}

impl Probes {
    fn probe(&mut self, at: Duration, code: u16) {
        match (code == 503, self.run_from) {
            (true, None) => {
                self.runs += 1;
                self.run_from = Some(at);
            }
            (false, _) => self.run_from = None,
            (true, Some(_)) => {}
        }
    }

    /// The runs of 503 that a 200 (or no answer) cut short.
    fn interrupted(&self) -> usize {
        self.runs - usize::from(self.run_from.is_some())
    }
}

impl Events {
    fn record(&mut self, at: Duration, snap: &Snapshot, code: u16, body: &str) {
        if code == 503 && self.unhealthy.is_none() {
            self.unhealthy = Some((at, body.trim().to_string()));
        }
        let held = snap
            .targets
            .first()
            .map(|t| t.verdict())
            .filter(|v| v.would_fail());
        if let (Some(v), None) = (held, &self.would_fail) {
            let lines: Vec<&str> = v
                .notes
                .iter()
                .filter_map(|n| n.strip_prefix(WOULD_FAIL))
                .collect();
            self.would_fail = Some((at, lines.join("; ")));
        }
        // What the kubelet saw before the child ran out (this tick's probe comes after the
        // leak step that hit EMFILE).
        if self.emfile.is_none() {
            self.probes.probe(at, code);
        }
        if let Some(f) = fds(snap) {
            if let (Some(v), Some(l)) = (f.value, f.limit) {
                if self.level.is_none() && v >= LEVEL * l {
                    self.level = Some((at, v));
                }
            }
        }
    }

    fn summary(&self, args: &DemoArgs) -> ExitCode {
        println!();
        if args.observe {
            match &self.would_fail {
                Some((at, lines)) => println!(
                    "{:>4.0}s  /healthz would have turned 503 (observe mode: it answered 200): {lines}",
                    at.as_secs_f64()
                ),
                None => println!("/healthz would never have turned 503"),
            }
            self.limits(args);
            return self.would_lead();
        }
        match &self.unhealthy {
            Some((at, body)) => println!("{:>4.0}s  /healthz turned 503: {body}", at.as_secs_f64()),
            None => println!("/healthz never turned 503"),
        }
        if let (Some(from), true) = (self.probes.run_from, self.probes.interrupted() > 0) {
            println!(
                "{:>4.0}s  /healthz turned 503 again, after {} back to 200, and stayed 503",
                from.as_secs_f64(),
                times(self.probes.interrupted())
            );
        }
        self.limits(args);
        self.lead()
    }

    /// When the level rule alone would fail, and when the child ran out.
    fn limits(&self, args: &DemoArgs) {
        if let Some((at, v)) = self.level {
            println!(
                "{:>4.0}s  fds reached {:.0}% of the limit ({v:.0}/{}): where a level rule alone would fail",
                at.as_secs_f64(),
                LEVEL * 100.0,
                args.nofile
            );
        }
        match &self.emfile {
            Some((at, why)) => println!(
                "{:>4.0}s  the child ran out of fds: {why}",
                at.as_secs_f64()
            ),
            None => println!("the child did not run out within {:?}", args.max),
        }
    }

    /// Observe mode: the lead leakwatch would have given, had it been enforcing.
    fn would_lead(&self) -> ExitCode {
        let (Some((w, _)), Some((e, _))) = (&self.would_fail, &self.emfile) else {
            return ExitCode::from(1);
        };
        if w >= e {
            println!("\nthe verdict failed only after the child ran out: no lead time");
            return ExitCode::from(1);
        }
        println!(
            "\nobserve mode: leakwatch would have restarted the child {:.0}s before it ran out \
             of fds; /healthz answered 200 throughout, so nothing restarted it. With mode = \
             \"enforce\" (the demo without --observe) that 503 restarts it.",
            e.saturating_sub(*w).as_secs_f64()
        );
        ExitCode::SUCCESS
    }

    /// The lead a kubelet sees: from the start of the last unbroken 503 to EMFILE.
    fn lead(&self) -> ExitCode {
        let (Some((u, _)), Some((e, _))) = (&self.unhealthy, &self.emfile) else {
            return ExitCode::from(1);
        };
        if u >= e {
            println!("\n/healthz failed only after the child ran out: no lead time");
            return ExitCode::from(1);
        }
        let flapped = self.probes.interrupted();
        if flapped > 0 {
            println!(
                "\nthe verdict flapped: /healthz turned 503 {} and went back to 200 {} before \
                 EMFILE (the first 503 was {:.0}s before it). A kubelet restarts only after \
                 failureThreshold failed probes in a row: only an unbroken 503 counts.",
                times(self.probes.runs),
                times(flapped),
                e.saturating_sub(*u).as_secs_f64()
            );
        }
        let Some(from) = self.probes.run_from else {
            println!("\n/healthz answered 200 again before the child ran out: no lead time a kubelet sees");
            return ExitCode::from(1);
        };
        let run = if flapped > 0 {
            "turning 503 for the last time"
        } else {
            "turning 503 (503 on every probe since: the verdict did not flap)"
        };
        println!(
            "\nlead time: {:.0}s between /healthz {run} and EMFILE, the unbroken run of failed \
             probes a kubelet needs. A liveness probe on /healthz restarts the service in that \
             window, on your terms.",
            e.saturating_sub(from).as_secs_f64()
        );
        ExitCode::SUCCESS
    }
}

/// `once`, `twice`, `3 times`.
fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

fn fds(snap: &Snapshot) -> Option<&SeriesStatus> {
    snap.targets
        .first()?
        .judged
        .series
        .iter()
        .find(|s| s.series == Series::Fds)
}

fn line(at: Duration, snap: &Snapshot, code: u16) -> String {
    let t = snap.targets.first();
    let sample = t.and_then(|t| t.sample.as_ref());
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let tcp = sample.and_then(|s| s.tcp.as_ref());
    let f = fds(snap);
    let (used, limit) = (
        f.and_then(|f| f.value).unwrap_or(0.0),
        f.and_then(|f| f.limit).unwrap_or(0.0),
    );
    let pct = if limit > 0.0 {
        used * 100.0 / limit
    } else {
        0.0
    };
    let growth = f
        .and_then(|f| f.trend.as_ref())
        .map_or("-".to_string(), |t| {
            let mark = if t.trusted { "" } else { "?" };
            format!("{}{mark}", rate_text(t.slope_per_s, false))
        });
    let tte = f
        .and_then(|f| f.seconds_to_exhaustion)
        .map_or("-".to_string(), |s| format!("~{}", approx_secs(s)));
    let would_fail = t.is_some_and(|t| t.verdict().would_fail());
    let verdict = match code {
        200 if would_fail => "200 observe: would fail".to_string(),
        200 => "200 ok".to_string(),
        503 => "503 UNHEALTHY".to_string(),
        0 => "no answer".to_string(),
        c => c.to_string(),
    };
    format!(
        "  {:>4.0}s  {:>4.0}/{:<4.0} {:>3.0}%  {:>10}  {:>5}  {:>5}  {:>10}  {:>12}  {verdict}",
        at.as_secs_f64(),
        used,
        limit,
        pct,
        opt(tcp.map(|t| t.states.close_wait)),
        opt(tcp.map(|t| t.states.established)),
        opt(sample.and_then(|s| s.stuck.as_ref()).map(|s| s.count)),
        growth,
        tte,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(codes: &[u16]) -> Probes {
        let mut p = Probes::default();
        for (i, &code) in codes.iter().enumerate() {
            p.probe(Duration::from_secs(i as u64), code);
        }
        p
    }

    #[test]
    fn the_lead_counts_from_the_last_unbroken_503() {
        assert_eq!(probes(&[200, 200]), Probes::default());
        let once = probes(&[200, 503, 503]);
        assert_eq!(
            (once.runs, once.run_from, once.interrupted()),
            (1, Some(Duration::from_secs(1)), 0)
        );
        let flapped = probes(&[200, 503, 503, 200, 503, 200, 503, 503]);
        assert_eq!(flapped.runs, 3);
        assert_eq!(flapped.run_from, Some(Duration::from_secs(6)));
        assert_eq!(flapped.interrupted(), 2);
        // A 503 that a 200 cut short just before EMFILE: no lead a kubelet sees.
        let cut = probes(&[503, 503, 200]);
        assert_eq!((cut.runs, cut.run_from, cut.interrupted()), (1, None, 1));
        // No answer is no 503 either.
        assert_eq!(probes(&[503, 0, 503]).interrupted(), 1);
    }

    fn events(codes: &[u16], emfile_s: u64) -> Events {
        let mut e = Events::default();
        for (i, &code) in codes.iter().enumerate() {
            let at = Duration::from_secs(i as u64);
            if code == 503 && e.unhealthy.is_none() {
                e.unhealthy = Some((at, "fds: ...".into()));
            }
            e.probes.probe(at, code);
        }
        e.emfile = Some((Duration::from_secs(emfile_s), "error: EMFILE".into()));
        e
    }

    #[test]
    fn a_lead_needs_a_503_that_lasts_until_emfile() {
        // Unbroken, or flapped before and unbroken since: a lead (from the last run), exit 0.
        assert_eq!(events(&[200, 503, 503], 3).lead(), ExitCode::SUCCESS);
        assert_eq!(events(&[503, 200, 503, 503], 4).lead(), ExitCode::SUCCESS);
        // 200 again at the last probe before EMFILE: no lead a kubelet sees.
        assert_eq!(events(&[503, 503, 200], 3).lead(), ExitCode::from(1));
        // No 503 at all.
        assert_eq!(events(&[200, 200], 2).lead(), ExitCode::from(1));
    }
}
