//! One firing on its own thread: the bundle, then the signal, then the hook, each result
//! recorded in the shared state as it comes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::{info, warn};

use super::bundle::HistoryRow;
use super::{bundle, exec, signal, Action, ActionOutcome, ActionResult, Shared};
use crate::config::actions::{BundleConfig, ExecConfig, SignalConfig};
use crate::config::ActionsConfig;
use crate::judge::Judged;
use crate::sample::{Sample, TargetId};
use crate::units;

/// One firing, owned by its thread.
pub(super) struct Job {
    pub(super) name: String,
    pub(super) cfg: ActionsConfig,
    pub(super) proc_root: PathBuf,
    pub(super) cgroup_root: PathBuf,
    pub(super) sample: Option<Sample>,
    pub(super) judged: Judged,
    pub(super) failing: Vec<String>,
    pub(super) history: Vec<HistoryRow>,
    pub(super) id: Option<TargetId>,
    /// The target is in observe mode: `/healthz` kept answering 200.
    pub(super) observe: bool,
}

impl Job {
    /// Run the configured actions in order (bundle, signal, exec), recording each result as
    /// it comes, then mark the firing done.
    pub(super) fn run(self, shared: &Mutex<Shared>) {
        let record = |r: ActionResult| {
            log_result(&self.name, &r);
            shared.lock().unwrap_or_else(|e| e.into_inner()).record(r);
        };
        let mut bundle_path = None;
        if let Some(b) = &self.cfg.bundle {
            let (r, path) = self.bundle(b);
            bundle_path = path;
            record(r);
        }
        if let Some(s) = &self.cfg.signal {
            record(self.signal(s));
        }
        if let Some(e) = &self.cfg.exec {
            record(self.exec(e, bundle_path.as_deref()));
        }
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        s.running = false;
        if let Some(last) = s.last.as_mut() {
            last.running = false;
        }
    }

    /// The bundle action: its result, and the bundle's path when one was written.
    fn bundle(&self, cfg: &BundleConfig) -> (ActionResult, Option<PathBuf>) {
        let result = |result, detail| ActionResult {
            action: Action::Bundle,
            result,
            detail,
        };
        let Some(sample) = &self.sample else {
            let why = "no running process to capture: no bundle".to_string();
            return (result(ActionOutcome::Skipped, why), None);
        };
        let reason = if self.observe {
            "the verdict flipped from healthy to unhealthy (observe mode: /healthz kept \
             answering 200)"
        } else {
            "the verdict flipped from healthy to unhealthy"
        };
        let input = bundle::BundleInput {
            name: &self.name,
            reason,
            sample,
            judged: Some(&self.judged),
            history: &self.history,
        };
        match bundle::make(&self.proc_root, &self.cgroup_root, cfg, &input) {
            Ok(w) => {
                let truncated = if w.truncated.is_empty() {
                    String::new()
                } else {
                    format!("; truncated {}", w.truncated.join("; "))
                };
                let detail = format!(
                    "bundle written: {} ({}{truncated})",
                    w.path.display(),
                    units::bytes(w.bytes)
                );
                (result(ActionOutcome::Ok, detail), Some(w.path))
            }
            Err(e) => (result(ActionOutcome::Failed, e), None),
        }
    }

    /// The signal action, through a pidfd of the process judged.
    fn signal(&self, s: &SignalConfig) -> ActionResult {
        let name = s.signal.name();
        let (result, detail) = match self.id {
            None => (
                ActionOutcome::Skipped,
                "no process was identified: no signal sent".into(),
            ),
            Some(id) => match signal::send(&self.proc_root, id, s.signal.number) {
                Ok(()) => (ActionOutcome::Ok, format!("{name} sent to {id}")),
                Err(e) if e.refused => (ActionOutcome::Skipped, e.message),
                Err(e) => (ActionOutcome::Failed, e.message),
            },
        };
        ActionResult {
            action: Action::Signal,
            result,
            detail,
        }
    }

    /// The exec hook, with the target, pid, failing rules and bundle in its environment;
    /// its output goes to the log.
    fn exec(&self, e: &ExecConfig, bundle_path: Option<&Path>) -> ActionResult {
        let env = [
            ("LEAKWATCH_TARGET", self.name.clone()),
            (
                "LEAKWATCH_PID",
                self.id.map(|i| i.pid.to_string()).unwrap_or_default(),
            ),
            ("LEAKWATCH_RULES", self.failing.join("\n")),
            (
                "LEAKWATCH_BUNDLE",
                bundle_path
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
        ];
        let run = exec::run(e, &env);
        for line in run.output.lines() {
            info!(target_name = %self.name, hook_pid = run.pid, "hook: {line}");
        }
        if run.output_dropped > 0 {
            info!(target_name = %self.name, "hook: {} more bytes of output not logged", run.output_dropped);
        }
        ActionResult {
            action: Action::Exec,
            result: if run.ok {
                ActionOutcome::Ok
            } else {
                ActionOutcome::Failed
            },
            detail: format!("{:?}: {}", e.argv[0], run.summary),
        }
    }
}

fn log_result(name: &str, r: &ActionResult) {
    match r.result {
        ActionOutcome::Ok => info!(target_name = %name, action = r.action.as_str(), "{}", r.detail),
        _ => warn!(
            target_name = %name,
            action = r.action.as_str(),
            result = r.result.as_str(),
            "{}",
            r.detail
        ),
    }
}
