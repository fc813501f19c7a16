//! `[actions]` and `[target.actions]`: what leakwatch does when a target's verdict flips from
//! healthy to unhealthy (a diagnostics bundle, a signal, an exec hook) and the guards around
//! it. Stage one ([`RawActions`]) is the TOML as written; a target's table overlays the global
//! one key by key, part by part, and the result is validated into an [`ActionsConfig`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{HumanDuration, Quantity};

/// The three actions, in the order a firing runs them (`[actions] observe` names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Bundle,
    Signal,
    Exec,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Bundle, Action::Signal, Action::Exec];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Bundle => "bundle",
            Action::Signal => "signal",
            Action::Exec => "exec",
        }
    }
}

/// `[actions]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActions {
    pub cooldown: Option<HumanDuration>,
    pub max_per_hour: Option<u32>,
    /// The actions that still run on the flip of a target in observe mode.
    pub observe: Option<Vec<Action>>,
    pub bundle: Option<RawBundle>,
    pub signal: Option<RawSignal>,
    pub exec: Option<RawExec>,
}

/// `[actions.bundle]`: present turns the bundle on.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBundle {
    pub dir: Option<PathBuf>,
    pub max_bytes: Option<Quantity>,
    pub keep: Option<u32>,
}

/// `[actions.signal]`: present turns the signal on.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignal {
    pub signal: Option<SignalName>,
    pub grace: Option<HumanDuration>,
}

/// `[actions.exec]`: present turns the hook on.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExec {
    pub argv: Option<Vec<String>>,
    pub timeout: Option<HumanDuration>,
}

/// A signal by name (`"SIGUSR2"`, `"USR2"`) or number (`12`), checked while the TOML is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalName {
    pub number: i32,
}

impl SignalName {
    /// `SIGUSR2`, or `signal 40` for a number without a name (real-time signals).
    pub fn name(self) -> String {
        nix::sys::signal::Signal::try_from(self.number)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {}", self.number))
    }
}

/// Parse a signal name or number.
pub fn parse_signal(s: &str) -> Result<SignalName, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return signal_number(i64::from(n));
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .map(|sig| SignalName { number: sig as i32 })
        .map_err(|_| format!("unknown signal {s:?} (use a name like \"SIGUSR2\" or a number)"))
}

fn signal_number(n: i64) -> Result<SignalName, String> {
    let max = i64::from(libc::SIGRTMAX());
    if (1..=max).contains(&n) {
        Ok(SignalName { number: n as i32 })
    } else {
        Err(format!("expected a signal number from 1 to {max}, got {n}"))
    }
}

impl<'de> Deserialize<'de> for SignalName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => signal_number(n),
            Raw::S(s) => parse_signal(&s),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl RawActions {
    /// `self` (a target's table) over `base` (the global one): each key the target sets wins,
    /// each part it leaves out is inherited.
    pub fn over(&self, base: &RawActions) -> RawActions {
        fn part<T: Clone>(
            mine: &Option<T>,
            theirs: &Option<T>,
            merge: impl Fn(&T, &T) -> T,
        ) -> Option<T> {
            match (mine, theirs) {
                (Some(m), Some(t)) => Some(merge(m, t)),
                (m, t) => m.clone().or_else(|| t.clone()),
            }
        }
        RawActions {
            cooldown: self.cooldown.or(base.cooldown),
            max_per_hour: self.max_per_hour.or(base.max_per_hour),
            observe: self.observe.clone().or_else(|| base.observe.clone()),
            bundle: part(&self.bundle, &base.bundle, |m, t| RawBundle {
                dir: m.dir.clone().or_else(|| t.dir.clone()),
                max_bytes: m.max_bytes.or(t.max_bytes),
                keep: m.keep.or(t.keep),
            }),
            signal: part(&self.signal, &base.signal, |m, t| RawSignal {
                signal: m.signal.or(t.signal),
                grace: m.grace.or(t.grace),
            }),
            exec: part(&self.exec, &base.exec, |m, t| RawExec {
                argv: m.argv.clone().or_else(|| t.argv.clone()),
                timeout: m.timeout.or(t.timeout),
            }),
        }
    }
}

/// What to do on a healthy→unhealthy flip, validated; every part is opt-in.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionsConfig {
    /// The shortest time between two firings for the same target.
    pub cooldown: Duration,
    /// Firings per target within any hour.
    pub max_per_hour: u32,
    /// `observe`: the actions that still run on the flip of a target in observe mode, which
    /// only collect evidence by default (the bundle). The exec hook may restart the target
    /// (a restart recipe of your own) and the signal may kill one without a handler: each
    /// runs in observe mode only when listed. Sorted, without repeats.
    pub observe: Vec<Action>,
    pub bundle: Option<BundleConfig>,
    pub signal: Option<SignalConfig>,
    pub exec: Option<ExecConfig>,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            cooldown: Duration::from_secs(600),
            max_per_hour: 3,
            observe: vec![Action::Bundle],
            bundle: None,
            signal: None,
            exec: None,
        }
    }
}

impl ActionsConfig {
    /// No action configured: flips only log.
    pub fn is_empty(&self) -> bool {
        self.bundle.is_none() && self.signal.is_none() && self.exec.is_none()
    }

    /// The actions configured, in the order a firing runs them.
    pub fn configured(&self) -> Vec<Action> {
        let on = [
            self.bundle.is_some(),
            self.signal.is_some(),
            self.exec.is_some(),
        ];
        Action::ALL
            .into_iter()
            .zip(on)
            .filter_map(|(a, on)| on.then_some(a))
            .collect()
    }

    /// What a flip in observe mode runs: the configured actions `observe` lists, the others
    /// left out.
    pub fn for_observe(&self) -> ActionsConfig {
        let allowed = |a: Action| self.observe.contains(&a);
        ActionsConfig {
            bundle: self.bundle.clone().filter(|_| allowed(Action::Bundle)),
            signal: self.signal.clone().filter(|_| allowed(Action::Signal)),
            exec: self.exec.clone().filter(|_| allowed(Action::Exec)),
            ..self.clone()
        }
    }
}

/// `[actions.bundle]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleConfig {
    pub dir: PathBuf,
    /// The cap on one bundle, bytes; listings are truncated with a note to fit.
    pub max_bytes: u64,
    /// Bundles of the target kept; older ones are removed.
    pub keep: u32,
}

impl Default for BundleConfig {
    fn default() -> Self {
        BundleConfig {
            dir: PathBuf::from("/var/lib/leakwatch/bundles"),
            max_bytes: 50 * 1024 * 1024,
            keep: 10,
        }
    }
}

/// `[actions.signal]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalConfig {
    pub signal: SignalName,
    /// `signal_grace`: after the signal is sent, `/healthz` keeps answering 200 (with a note)
    /// this long, so a dump can finish before the kubelet restarts the target.
    pub grace: Duration,
}

/// `[actions.exec]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecConfig {
    /// Program and arguments, run without a shell.
    pub argv: Vec<String>,
    /// Killed (with its process group) after this long.
    pub timeout: Duration,
}

/// The smallest `max_bytes`: room for the README and verdict with a note.
pub const MIN_BUNDLE_BYTES: u64 = 16 * 1024;

/// An error: (key under `[actions]`, message).
type Invalid = (String, String);

fn invalid<T>(key: &str, message: String) -> Result<T, Invalid> {
    Err((key.to_string(), message))
}

/// Validate; errors are (key under `[actions]`, message).
pub fn validate(raw: &RawActions) -> Result<ActionsConfig, Invalid> {
    let d = ActionsConfig::default();
    let max_per_hour = raw.max_per_hour.unwrap_or(d.max_per_hour);
    if max_per_hour == 0 {
        return invalid(
            "max_per_hour",
            "must be at least 1 (leave out the action tables to turn actions off)".into(),
        );
    }
    let mut observe = raw.observe.clone().unwrap_or(d.observe);
    observe.sort();
    observe.dedup();
    Ok(ActionsConfig {
        cooldown: raw.cooldown.map_or(d.cooldown, |c| c.0),
        max_per_hour,
        observe,
        bundle: raw.bundle.as_ref().map(bundle).transpose()?,
        signal: raw.signal.as_ref().map(signal).transpose()?,
        exec: raw.exec.as_ref().map(exec).transpose()?,
    })
}

fn bundle(b: &RawBundle) -> Result<BundleConfig, Invalid> {
    let bd = BundleConfig::default();
    let dir = b.dir.clone().unwrap_or(bd.dir);
    if !dir.is_absolute() {
        return invalid(
            "bundle.dir",
            format!(
                "expected an absolute path, got {:?}",
                dir.display().to_string()
            ),
        );
    }
    let max_bytes = b.max_bytes.map_or(bd.max_bytes, |q| q.0 as u64);
    if max_bytes < MIN_BUNDLE_BYTES {
        return invalid(
            "bundle.max_bytes",
            format!("must be at least 16KiB, got {max_bytes} bytes"),
        );
    }
    let keep = b.keep.unwrap_or(bd.keep);
    if keep == 0 {
        return invalid("bundle.keep", "must be at least 1".into());
    }
    Ok(BundleConfig {
        dir,
        max_bytes,
        keep,
    })
}

fn signal(s: &RawSignal) -> Result<SignalConfig, Invalid> {
    let Some(signal) = s.signal else {
        return invalid(
            "signal.signal",
            "name the signal to send, e.g. signal = \"SIGUSR2\" (a process without a \
             handler for it may die of it)"
                .into(),
        );
    };
    Ok(SignalConfig {
        signal,
        grace: s.grace.map_or(Duration::ZERO, |g| g.0),
    })
}

fn exec(e: &RawExec) -> Result<ExecConfig, Invalid> {
    let argv = e.argv.clone().unwrap_or_default();
    if argv.first().is_none_or(|p| p.is_empty()) {
        return invalid(
            "exec.argv",
            "expected the program and its arguments, e.g. argv = [\"/usr/local/bin/on-leak\"]"
                .into(),
        );
    }
    let timeout = e.timeout.map_or(Duration::from_secs(30), |t| t.0);
    if timeout < Duration::from_millis(100) {
        return invalid("exec.timeout", "must be at least 100ms".into());
    }
    Ok(ExecConfig { argv, timeout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_mode_runs_only_the_listed_actions() {
        let all = ActionsConfig {
            bundle: Some(BundleConfig::default()),
            signal: Some(SignalConfig {
                signal: SignalName { number: 12 },
                grace: Duration::ZERO,
            }),
            exec: Some(ExecConfig {
                argv: vec!["true".into()],
                timeout: Duration::from_secs(1),
            }),
            ..ActionsConfig::default()
        };
        assert_eq!(all.configured(), Action::ALL);
        // By default only the bundle: it only collects evidence.
        assert_eq!(all.for_observe().configured(), [Action::Bundle]);
        let listed = ActionsConfig {
            observe: vec![Action::Signal, Action::Exec],
            ..all.clone()
        };
        assert_eq!(
            listed.for_observe().configured(),
            [Action::Signal, Action::Exec]
        );
        let none = ActionsConfig {
            observe: Vec::new(),
            ..all
        };
        assert!(none.for_observe().is_empty());
        assert_eq!(none.for_observe().cooldown, none.cooldown);
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGUSR2").unwrap().number, libc::SIGUSR2);
        assert_eq!(parse_signal("usr2").unwrap().number, libc::SIGUSR2);
        assert_eq!(parse_signal("QUIT").unwrap().number, libc::SIGQUIT);
        assert_eq!(parse_signal("12").unwrap().number, 12);
        assert_eq!(parse_signal("40").unwrap().name(), "signal 40");
        assert_eq!(parse_signal("SIGUSR2").unwrap().name(), "SIGUSR2");
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
    }
}
