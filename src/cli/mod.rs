//! The command line: `leakwatch run|check|inspect|demo|backtest|config|generate`.
//!
//! A thin layer: parse with clap, call the library, print errors with their whole cause
//! chain, map outcomes to exit codes (0 ok, 1 unhealthy, 2 unknown or error).

mod backtest;
mod check;
mod demo;
mod generate;
mod inspect;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::demo_child::{self, ChildArgs};
use crate::logging::LogFormat;
use crate::target::Selector;
use crate::target::SelectorRegex;

#[derive(Debug, Parser)]
#[command(
    name = "leakwatch",
    version,
    about = "Restart a service before it runs out of file descriptors or memory",
    long_about = "leakwatch watches one process from the outside (its fd table against \
RLIMIT_NOFILE, TCP sockets by state, RSS and heap, cgroup memory, threads stuck in socket \
calls) and serves a /healthz that fails before the limit is hit."
)]
pub struct Cli {
    /// Log line format on stderr (level from LEAKWATCH_LOG, e.g. `debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch targets and serve /healthz, /livez, /readyz, /metrics and /status.
    Run(run::RunArgs),
    /// One-shot verdict for exec probes and cron: exit 0 healthy, 1 unhealthy, 2 unknown.
    Check(check::CheckArgs),
    /// Show one process: fds by type, TCP by state and peer, memory and heap, cgroup memory,
    /// threads and stuck workers.
    Inspect(inspect::InspectArgs),
    /// Watch a built-in leaking child run out of fds, and see it coming.
    Demo(demo::DemoArgs),
    /// Replay a service's history from Prometheus through the judge: when would /healthz
    /// have turned 503, how long before the limit or the restart?
    Backtest(backtest::BacktestArgs),
    /// Check or print a config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write the man pages or print shell completions (the .deb installs both).
    Generate(generate::GenerateArgs),
    /// The built-in leaking child (for tests and the demo).
    #[command(hide = true)]
    DemoChild(ChildArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file: exit 0 if valid, 2 with file:line:column and the key if not.
    Check { file: PathBuf },
    /// Print a commented example config.
    Example,
}

/// One selector for the target (at most one of these).
#[derive(Debug, Clone, Default, Args)]
#[group(multiple = false)]
pub struct SelectorArgs {
    /// The target's pid.
    #[arg(long)]
    pub pid: Option<i32>,
    /// A file holding the target's pid.
    #[arg(long)]
    pub pidfile: Option<PathBuf>,
    /// Exact process name (comm).
    #[arg(long)]
    pub name: Option<String>,
    /// Regex on the process name (comm).
    #[arg(long, value_parser = parse_regex)]
    pub name_regex: Option<SelectorRegex>,
    /// Regex on the whole command line.
    #[arg(long, value_parser = parse_regex)]
    pub cmdline_regex: Option<SelectorRegex>,
    /// A cgroup directory: its oldest process is the target.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// A systemd unit: the oldest process in its cgroup is the target.
    #[arg(long)]
    pub systemd_unit: Option<String>,
}

impl SelectorArgs {
    pub fn selector(&self) -> Option<Selector> {
        let s = self.clone();
        s.pid
            .map(Selector::Pid)
            .or(s.pidfile.map(Selector::Pidfile))
            .or(s.name.map(Selector::Name))
            .or(s.name_regex.map(Selector::NameRegex))
            .or(s.cmdline_regex.map(Selector::CmdlineRegex))
            .or(s.cgroup.map(Selector::Cgroup))
            .or(s.systemd_unit.map(Selector::SystemdUnit))
    }
}

fn parse_regex(s: &str) -> Result<SelectorRegex, String> {
    regex::Regex::new(s)
        .map(SelectorRegex)
        .map_err(|e| e.to_string())
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("expected a duration like \"2s\": {e}"))
}

/// Parse the command line, run, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // check and demo speak on stdout; their logs only say what went wrong.
    let level = match cli.command {
        Command::Check(_) | Command::Backtest(_) => "error",
        Command::Demo(_) => "error",
        _ => "info",
    };
    crate::logging::init(cli.log_format, level);
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Backtest(args) => backtest::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Config(ConfigCommand::Example) => {
            print!("{}", crate::config::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check { file }) => match Config::load(&file) {
            Ok(c) => {
                println!("{}: ok, {} target(s)", file.display(), c.targets.len());
                for t in &c.targets {
                    println!("  {}: {} (mode {})", t.name, t.selector, t.mode);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::DemoChild(args) => match demo_child::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("leakwatch demo-child: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
