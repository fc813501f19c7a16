//! The command line: `leakwatch run|check|inspect|demo|config`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::demo_child::{self, ChildArgs};

#[derive(Debug, Parser)]
#[command(name = "leakwatch", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch targets and serve /healthz, /metrics and /status (not yet).
    Run,
    /// The built-in leaking child (for tests and the demo).
    #[command(hide = true)]
    DemoChild(ChildArgs),
}

/// Parse the command line, run, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run => {
            eprintln!("leakwatch run: not yet implemented");
            ExitCode::from(2)
        }
        Command::DemoChild(args) => match demo_child::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("leakwatch demo-child: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
