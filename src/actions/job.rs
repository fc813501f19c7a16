//! One firing on its own thread: the bundle, then the signal, then the hook, each result
//! recorded in the shared state as it comes.

use std::path::PathBuf;
use std::sync::Mutex;

use tracing::{info, warn};

use super::bundle::HistoryRow;
use super::{bundle, exec, signal, Action, ActionResult, Outcome, Shared};
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
}

impl Job {
    pub(super) fn run(self, shared: &Mutex<Shared>) {
        let record = |r: ActionResult| {
            match r.result {
                Outcome::Ok => {
                    info!(target_name = %self.name, action = r.action.as_str(), "{}", r.detail)
                }
                _ => warn!(
                    target_name = %self.name,
                    action = r.action.as_str(),
                    result = r.result.as_str(),
                    "{}",
                    r.detail
                ),
            }
            shared.lock().unwrap_or_else(|e| e.into_inner()).record(r);
        };
        let mut bundle_path = None;
        if let Some(b) = &self.cfg.bundle {
            let r = self.bundle(b);
            if let Ok(w) = &r {
                bundle_path = Some(w.path.clone());
            }
            record(match r {
                Ok(w) => ActionResult {
                    action: Action::Bundle,
                    result: Outcome::Ok,
                    detail: format!(
                        "bundle written: {} ({}{})",
                        w.path.display(),
                        units::bytes(w.bytes),
                        if w.truncated.is_empty() {
                            String::new()
                        } else {
                            format!("; truncated {}", w.truncated.join("; "))
                        }
                    ),
                },
                Err((result, detail)) => ActionResult {
                    action: Action::Bundle,
                    result,
                    detail,
                },
            });
        }
        if let Some(s) = &self.cfg.signal {
            let name = s.signal.name();
            let r = match self.id {
                None => (
                    Outcome::Skipped,
                    "no process was identified: no signal sent".into(),
                ),
                Some(id) => match signal::send(&self.proc_root, id, s.signal.number) {
                    Ok(()) => (Outcome::Ok, format!("{name} sent to {id}")),
                    Err(e) if e.refused => (Outcome::Skipped, e.message),
                    Err(e) => (Outcome::Failed, e.message),
                },
            };
            record(ActionResult {
                action: Action::Signal,
                result: r.0,
                detail: r.1,
            });
        }
        if let Some(e) = &self.cfg.exec {
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
                        .as_ref()
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
            record(ActionResult {
                action: Action::Exec,
                result: if run.ok { Outcome::Ok } else { Outcome::Failed },
                detail: format!("{:?}: {}", e.argv[0], run.summary),
            });
        }
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        s.running = false;
        if let Some(last) = s.last.as_mut() {
            last.running = false;
        }
    }

    fn bundle(
        &self,
        cfg: &crate::config::actions::BundleConfig,
    ) -> Result<bundle::Written, (Outcome, String)> {
        let Some(sample) = &self.sample else {
            return Err((
                Outcome::Skipped,
                "no running process to capture: no bundle".into(),
            ));
        };
        let input = bundle::BundleInput {
            name: &self.name,
            reason: "the verdict flipped from healthy to unhealthy",
            sample,
            judged: Some(&self.judged),
            history: &self.history,
        };
        bundle::make(&self.proc_root, &self.cgroup_root, cfg, &input)
            .map_err(|e| (Outcome::Failed, e))
    }
}
