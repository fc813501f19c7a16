//! `leakwatch generate`: the man pages and shell completions, made from the same clap
//! definitions that parse the command line, so they cannot drift from it
//! (`clap_mangen`, `clap_complete`). The .deb installs them: `packaging/assets.sh` writes
//! them under `target/assets/` before `cargo deb` packs them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Subcommand};
use clap_complete::Shell;

use super::Cli;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Write the man pages into DIR: leakwatch.1, and leakwatch-run.1 and so on, one per
    /// subcommand.
    Man { dir: PathBuf },
    /// Print the completion script for SHELL on stdout.
    Completions { shell: Shell },
}

/// What `man leakwatch` says beyond the options: roff, after the generated sections.
const SECTIONS: &str = r#".SH ENDPOINTS
\fBleakwatch run\fR serves \fB/healthz\fR (503 before a limit is hit; \fB/healthz/\fINAME\fR
for one target), \fB/livez\fR, \fB/readyz\fR, \fB/metrics\fR (Prometheus) and \fB/status\fR (JSON).
.SH FILES
.TP
.I /etc/leakwatch/leakwatch.toml
The targets and rules of \fBleakwatch.service\fR; \fBleakwatch config example\fR prints a
commented one, \fBleakwatch config check\fR \fIFILE\fR validates one.
.TP
.I /etc/leakwatch/UNIT.toml
The config of \fBleakwatch@UNIT.service\fR, which watches the systemd unit UNIT.
.SH EXIT STATUS
0: ok. 1: unhealthy (\fBcheck\fR), or no lead time (\fBdemo\fR). 2: unknown, or an error
(the message says which).
.SH ENVIRONMENT
.TP
.B LEAKWATCH_LOG
The log level on stderr, e.g. \fBdebug\fR.
.SH SEE ALSO
.BR systemd.service (5),
/usr/share/doc/leakwatch/README.md
"#;

/// `leakwatch.1` and one page per subcommand into `dir`; the main page gets [`SECTIONS`].
fn man(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    let main = dir.join("leakwatch.1");
    let mut page = std::fs::read_to_string(&main)?;
    page.push_str(SECTIONS);
    std::fs::write(main, page)
}

pub fn run(args: &GenerateArgs) -> ExitCode {
    let cmd = Cli::command();
    match &args.what {
        What::Man { dir } => {
            let written = man(dir);
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("leakwatch generate man: {}: {e}", dir.display());
                    ExitCode::from(2)
                }
            }
        }
        What::Completions { shell } => {
            let mut cmd = cmd;
            clap_complete::generate(*shell, &mut cmd, "leakwatch", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
