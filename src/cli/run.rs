//! `leakwatch run`: load the config (file and command line), start the daemon, turn
//! SIGTERM/SIGINT into a drain and SIGHUP into a reload that keeps the old config when the
//! new one is bad.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use futures_util::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio::sync::mpsc;
use tracing::{error, info};

use super::SelectorArgs;
use crate::config::{Config, TargetConfig};
use crate::daemon::{self, Control, Notifier, Parts};
use crate::http;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Config file (reloaded on SIGHUP).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub selector: SelectorArgs,
    /// Address for HTTP (overrides `listen`).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Address serving only /healthz, /livez and /readyz, for the kubelet's probes
    /// (overrides `probe_listen`).
    #[arg(long)]
    pub probe_listen: Option<std::net::SocketAddr>,
    /// Append every tick's values to FILE as JSON lines, for `leakwatch backtest
    /// --recording FILE` (overrides `record`; rotated to FILE.1 past `record_max_size`).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

/// The addresses given on the command line, which override the file's.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenArgs {
    pub listen: Option<std::net::SocketAddr>,
    pub probe_listen: Option<std::net::SocketAddr>,
}

/// The config from the file (or defaults) with the command line's overrides: a selector
/// given on the command line replaces the file's targets.
pub fn load(
    file: Option<&PathBuf>,
    selector: &SelectorArgs,
    addrs: ListenArgs,
) -> Result<Config, String> {
    let mut config = match file {
        Some(f) => Config::load(f).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(sel) = selector.selector() {
        let mut t = TargetConfig::from_selector(sel);
        t.judge = config.judge.clone();
        t.actions = config.actions.clone();
        t.mode = config.mode;
        config.targets = vec![t];
    }
    if let Some(l) = addrs.listen {
        config.listen = l;
    }
    if let Some(l) = addrs.probe_listen {
        config.probe_listen = Some(l);
    }
    if let Some(why) = crate::config::probe_port_clash(config.listen, config.probe_listen) {
        return Err(format!("--probe-listen: {why}"));
    }
    if config.targets.is_empty() {
        return Err(
            "no target: give a selector (--pid, --name, --cmdline-regex, ...) or a \
                    config file with a [[target]]"
                .into(),
        );
    }
    Ok(config)
}

pub fn run(args: &RunArgs) -> ExitCode {
    let config = match load(args.config.as_ref(), &args.selector, args.addrs()) {
        Ok(c) => args.recorded(c),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match daemon::runtime().and_then(|rt| rt.block_on(run_async(config, args.clone()))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run_async(config: Config, args: RunArgs) -> anyhow::Result<()> {
    let listener = http::bind(config.listen).await?;
    info!(listen = %listener.local_addr()?, "serving /healthz /livez /readyz /metrics /status");
    let probes = match config.probe_listen {
        Some(addr) => {
            let l = http::bind(addr).await?;
            info!(probe_listen = %l.local_addr()?, "serving /healthz /livez /readyz");
            Some(l)
        }
        None => None,
    };
    let file = args.config.as_ref().map(|f| f.display().to_string());
    let parts = Parts::new(config, file)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let signal_task = tokio::spawn(async move {
        while let Some(sig) = signals.next().await {
            let msg = match sig {
                SIGHUP => reload(&args),
                _ => {
                    info!(signal = sig, "draining and exiting");
                    Control::Shutdown
                }
            };
            let last = matches!(msg, Control::Shutdown);
            if tx.send(msg).is_err() || last {
                break;
            }
        }
    });
    let r = daemon::serve(parts, (listener, probes), rx, Notifier::from_env()).await;
    signal_task.abort();
    r
}

impl RunArgs {
    /// `config` with `--record` over its `record`.
    fn recorded(&self, mut config: Config) -> Config {
        if let Some(r) = &self.record {
            config.record = Some(r.clone());
        }
        config
    }

    fn addrs(&self) -> ListenArgs {
        ListenArgs {
            listen: self.listen,
            probe_listen: self.probe_listen,
        }
    }
}

fn reload(args: &RunArgs) -> Control {
    if args.config.is_none() {
        info!("SIGHUP: no config file to reload");
        return Control::ReloadFailed("SIGHUP without a config file: nothing to reload".into());
    }
    match load(args.config.as_ref(), &args.selector, args.addrs()) {
        Ok(c) => Control::Reload(Box::new(args.recorded(c))),
        Err(e) => {
            error!(error = %e, "reload refused: keeping the running config");
            Control::ReloadFailed(e)
        }
    }
}
