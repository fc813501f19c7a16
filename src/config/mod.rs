//! The config file, in two stages: [`raw`] is the TOML as written (serde, unknown keys
//! rejected, values that check themselves), [`Config`] is validated with every default
//! applied in one place ([`JudgeConfig::default`], [`Config::default`]).
//!
//! A bad file is a [`ConfigError`]: file, line, column, key, and what was expected.

pub mod actions;
pub mod fleet;
pub mod raw;
pub mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use actions::ActionsConfig;
use raw::{RawConfig, RawHttp, RawJudge, RawRule, RawRules, RawTarget};

use crate::fleet::FleetConfig;
use crate::judge::{Enforcement, JudgeConfig, Rule, Series};
use crate::target::Selector;

/// The commented example shipped as `packaging/leakwatch.toml` and printed by
/// `leakwatch config example`.
pub const EXAMPLE: &str = include_str!("../../packaging/leakwatch.toml");

/// A validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `mode`: for targets given on the command line, and the default of every
    /// `[[target]]`'s. `observe`: a failing verdict answers 200 (`observe: would fail: ...`).
    pub mode: Enforcement,
    pub listen: SocketAddr,
    /// A second address serving only the probes (`/healthz`, `/livez`, `/readyz`) with
    /// connection slots of its own: for the kubelet, apart from scrapes and people.
    pub probe_listen: Option<SocketAddr>,
    /// One tick: collect, judge, publish.
    pub interval: Duration,
    /// How often `smaps` (the heap estimate) is read; costly on processes with many mappings.
    pub smaps_every: Duration,
    /// How often the fd links are walked for the breakdown by type, for a target alone in
    /// its cgroup (whose ticks need no walk); only when the count changed.
    pub fd_types_every: Duration,
    pub proc_root: PathBuf,
    pub cgroup_root: PathBuf,
    /// Export each target's top peers as metric labels (top-K only); off by default for
    /// cardinality and because peers reveal topology.
    pub peer_labels: bool,
    /// `record`: append every tick's judged values to this file (JSON lines), for
    /// `leakwatch backtest --recording`.
    pub record: Option<PathBuf>,
    /// `record_max_size`: past this many bytes the recording moves to `FILE.1` (replacing
    /// the one before) and a new one starts.
    pub record_max_bytes: u64,
    pub http: HttpConfig,
    /// `[judge]`: the judging of targets given on the command line, and the base every
    /// `[[target]]` overlays.
    pub judge: JudgeConfig,
    /// `[actions]`: for targets given on the command line, and the base every
    /// `[target.actions]` overlays.
    pub actions: ActionsConfig,
    pub targets: Vec<TargetConfig>,
    /// `[fleet]`: restart slots shared with the other replicas; `None`: every restart is
    /// this daemon's own decision.
    pub fleet: Option<FleetConfig>,
}

/// `[http]`: how the endpoints are served.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// A file holding the bearer token for `/metrics` and `/status` (`/healthz`, `/livez`
    /// and `/readyz` stay open: the kubelet sends no secrets).
    pub token_file: Option<PathBuf>,
    /// Connections held at once on each listener; past it a new client takes the slot of
    /// the connection that has made no progress for the longest.
    pub max_connections: usize,
    /// A client must send its request headers within this long.
    pub header_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            token_file: None,
            max_connections: 1024,
            header_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Enforcement::Enforce,
            listen: SocketAddr::from(([127, 0, 0, 1], 9717)),
            probe_listen: None,
            interval: Duration::from_secs(5),
            smaps_every: Duration::from_secs(60),
            fd_types_every: Duration::from_secs(60),
            proc_root: PathBuf::from("/proc"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            peer_labels: false,
            record: None,
            record_max_bytes: 64 << 20,
            http: HttpConfig::default(),
            judge: JudgeConfig::default(),
            actions: ActionsConfig::default(),
            targets: Vec::new(),
            fleet: None,
        }
    }
}

/// A target: its name (the `target` label and `/healthz/NAME`), selector, judging and rules.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    pub name: String,
    pub selector: Selector,
    pub judge: JudgeConfig,
    /// The configured rules; series without one get [`default_rules`](crate::judge::default_rules).
    pub rules: Vec<(Series, Rule)>,
    /// What to do when the verdict flips to unhealthy.
    pub actions: ActionsConfig,
    /// `enforce`: a failing verdict fails `/healthz`; `observe`: it answers 200, saying
    /// what would fail, and only `[actions] observe`'s actions run on the flip.
    pub mode: Enforcement,
}

impl TargetConfig {
    /// A target given on the command line, with default judging and rules.
    pub fn from_selector(selector: Selector) -> TargetConfig {
        TargetConfig {
            name: default_name(&selector),
            selector,
            judge: JudgeConfig::default(),
            rules: Vec::new(),
            actions: ActionsConfig::default(),
            mode: Enforcement::Enforce,
        }
    }

    /// Configured rules, and the safe defaults for every series not configured.
    pub fn effective_rules(&self) -> Vec<(Series, Rule)> {
        crate::judge::effective_rules(&self.rules)
    }
}

fn default_name(sel: &Selector) -> String {
    let raw = match sel {
        Selector::Pid(p) => format!("pid-{p}"),
        Selector::Name(n) => n.clone(),
        Selector::SystemdUnit(u) => u.trim_end_matches(".service").to_string(),
        Selector::Pidfile(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let clean: String = raw
        .chars()
        .map(|c| if valid_name_char(c) { c } else { '_' })
        .collect();
    if clean.is_empty() {
        "target".into()
    } else {
        clean
    }
}

fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// A config file that could not be used: where, which key, what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The dotted key path, e.g. `target[0].rules.fds.max_ratio`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        Config::parse(&text, &file)
    }

    /// Parse and validate config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let err = |span: Option<std::ops::Range<usize>>, key: Option<String>, message: String| {
            let (line, column) = match span {
                Some(s) => {
                    let (l, c) = line_col(text, s.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            ConfigError {
                file: file.to_string(),
                line,
                column,
                key: key.filter(|k| !k.is_empty() && k != "."),
                message,
            }
        };
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| err(e.span(), None, e.message().trim().to_string()))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            // `Spanned` (used to locate a target table) shows up in serde's path: hide it.
            let key = e
                .path()
                .to_string()
                .replace("$__serde_spanned_private_value.", "");
            let inner = e.into_inner();
            err(inner.span(), Some(key), inner.message().trim().to_string())
        })?;
        validate(raw).map_err(|v| err(v.span, Some(v.key), v.message))
    }
}

/// A stage-two error, before it gets its line and column.
struct Invalid {
    span: Option<std::ops::Range<usize>>,
    key: String,
    message: String,
}

fn validate(raw: RawConfig) -> Result<Config, Invalid> {
    let defaults = Config::default();
    let invalid = |key: &str, message: String| Invalid {
        span: None,
        key: key.to_string(),
        message,
    };
    let interval = raw.interval.map_or(defaults.interval, |d| d.0);
    if interval < Duration::from_millis(100) {
        return Err(invalid("interval", "must be at least 100ms".into()));
    }
    let judge = overlay_judge(&JudgeConfig::default(), &raw.judge.unwrap_or_default());
    check_judge(&judge, interval).map_err(|(k, m)| invalid(&format!("judge.{k}"), m))?;

    let http = http(raw.http.unwrap_or_default(), &defaults.http)?;
    let fleet = match raw.fleet {
        Some(f) => Some(fleet::validate(f).map_err(|(k, m)| invalid(&format!("fleet.{k}"), m))?),
        None => None,
    };
    let global_actions = raw.actions.unwrap_or_default();
    let actions =
        actions::validate(&global_actions).map_err(|(k, m)| invalid(&format!("actions.{k}"), m))?;
    let mode = raw.mode.unwrap_or(defaults.mode);
    let base = Base {
        judge: &judge,
        actions: &global_actions,
        mode,
        interval,
    };
    let mut targets: Vec<TargetConfig> = Vec::new();
    for (i, spanned) in raw.target.into_iter().enumerate() {
        let span = spanned.span();
        let t = target(i, spanned.into_inner(), &base).map_err(|(key, message)| Invalid {
            span: Some(span.clone()),
            key,
            message,
        })?;
        if targets.iter().any(|o| o.name == t.name) {
            return Err(Invalid {
                span: Some(span),
                key: format!("target[{i}].name"),
                message: format!("two targets are named {:?}; names must be unique", t.name),
            });
        }
        targets.push(t);
    }
    let listen = raw.listen.unwrap_or(defaults.listen);
    let probe_listen = raw.probe_listen.or(defaults.probe_listen);
    if let Some(message) = probe_port_clash(listen, probe_listen) {
        return Err(Invalid {
            span: None,
            key: "probe_listen".into(),
            message,
        });
    }
    Ok(Config {
        mode,
        listen,
        probe_listen,
        interval,
        smaps_every: raw.smaps_every.map_or(defaults.smaps_every, |d| d.0),
        fd_types_every: raw.fd_types_every.map_or(defaults.fd_types_every, |d| d.0),
        proc_root: raw.proc_root.unwrap_or(defaults.proc_root),
        cgroup_root: raw.cgroup_root.unwrap_or(defaults.cgroup_root),
        peer_labels: raw.peer_labels.unwrap_or(defaults.peer_labels),
        record: raw.record.or(defaults.record),
        record_max_bytes: raw
            .record_max_size
            .map_or(defaults.record_max_bytes, |q| q.0.max(4096.0) as u64),
        http,
        judge,
        actions,
        targets,
        fleet,
    })
}

fn http(raw: RawHttp, d: &HttpConfig) -> Result<HttpConfig, Invalid> {
    let invalid = |key: &str, message: String| Invalid {
        span: None,
        key: format!("http.{key}"),
        message,
    };
    let max_connections = raw
        .max_connections
        .map_or(d.max_connections, |n| n as usize);
    if max_connections == 0 {
        return Err(invalid("max_connections", "must be at least 1".into()));
    }
    let header_timeout = raw.header_timeout.map_or(d.header_timeout, |h| h.0);
    if header_timeout < Duration::from_millis(100) {
        return Err(invalid("header_timeout", "must be at least 100ms".into()));
    }
    if let Some(f) = &raw.token_file {
        read_token(f).map_err(|m| invalid("token_file", m))?;
    }
    Ok(HttpConfig {
        token_file: raw.token_file,
        max_connections,
        header_timeout,
    })
}

/// Why `probe_listen` cannot be `listen` (the same address and a fixed port), if it is.
pub fn probe_port_clash(listen: SocketAddr, probe_listen: Option<SocketAddr>) -> Option<String> {
    (probe_listen == Some(listen) && listen.port() != 0)
        .then(|| format!("{listen} is `listen` already; the probe port must be another"))
}

/// The bearer token in `path`: its first line, trimmed; empty or unreadable is an error.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(token)
}

/// `base` with the `[judge]` keys of `k` written over it.
fn overlay_judge(base: &JudgeConfig, k: &RawJudge) -> JudgeConfig {
    let d = |v: Option<values::HumanDuration>, b: Duration| v.map_or(b, |h| h.0);
    JudgeConfig {
        window: d(k.window, base.window),
        min_samples: k.min_samples.unwrap_or(base.min_samples),
        min_span: min_span(base, k),
        warmup: d(k.warmup, base.warmup),
        fail_after: k.fail_after.unwrap_or(base.fail_after),
        recover_after: k.recover_after.unwrap_or(base.recover_after),
        min_failing: d(k.min_failing, base.min_failing),
        usage_floor: k.usage_floor.map_or(base.usage_floor, |r| r.0),
        restart_budget: k.restart_budget.unwrap_or(base.restart_budget),
        stuck_after: d(k.stuck_after, base.stuck_after),
        stall_after: d(k.stall_after, base.stall_after),
        on_missing: k.on_missing.unwrap_or(base.on_missing),
    }
}

/// `min_span` as set, else the base's; a base that spans its whole window (the default)
/// follows a new `window`, so setting only `window` never makes `min_span` longer than it.
fn min_span(base: &JudgeConfig, k: &RawJudge) -> Duration {
    match (k.min_span, k.window) {
        (Some(m), _) => m.0,
        (None, Some(w)) if base.min_span >= base.window => w.0,
        (None, _) => base.min_span,
    }
}

fn check_judge(j: &JudgeConfig, interval: Duration) -> Result<(), (&'static str, String)> {
    if j.window < interval * 2 {
        return Err((
            "window",
            format!("must span at least two intervals ({:?})", interval * 2),
        ));
    }
    if j.min_span > j.window {
        return Err((
            "min_span",
            format!("{:?} is longer than the window {:?}", j.min_span, j.window),
        ));
    }
    if j.min_samples < 3 {
        return Err(("min_samples", "a trend needs at least 3 samples".into()));
    }
    if j.fail_after == 0 {
        return Err(("fail_after", "must be at least 1".into()));
    }
    if j.recover_after == 0 {
        return Err(("recover_after", "must be at least 1".into()));
    }
    Ok(())
}

/// What every `[[target]]` overlays: the top level's judging, actions and mode.
struct Base<'a> {
    judge: &'a JudgeConfig,
    actions: &'a actions::RawActions,
    mode: Enforcement,
    interval: Duration,
}

fn target(i: usize, t: RawTarget, base: &Base<'_>) -> Result<TargetConfig, (String, String)> {
    let key = |k: &str| format!("target[{i}].{k}");
    let mut selectors: Vec<(&str, Selector)> = Vec::new();
    if let Some(p) = t.pid {
        selectors.push(("pid", Selector::Pid(p)));
    }
    if let Some(p) = &t.pidfile {
        selectors.push(("pidfile", Selector::Pidfile(p.clone())));
    }
    if let Some(r) = &t.name_regex {
        selectors.push(("name_regex", Selector::NameRegex(r.clone())));
    }
    if let Some(r) = &t.cmdline_regex {
        selectors.push(("cmdline_regex", Selector::CmdlineRegex(r.clone())));
    }
    if let Some(c) = &t.cgroup {
        selectors.push(("cgroup", Selector::Cgroup(c.clone())));
    }
    if let Some(u) = &t.systemd_unit {
        selectors.push(("systemd_unit", Selector::SystemdUnit(u.clone())));
    }
    let selector = match (selectors.len(), &t.name) {
        (1, _) => selectors.remove(0).1,
        (0, Some(n)) => Selector::Name(n.clone()),
        (0, None) => {
            return Err((
                key("pid"),
                "no selector: give one of pid, pidfile, name, name_regex, cmdline_regex, cgroup, systemd_unit".into(),
            ))
        }
        _ => {
            let names: Vec<&str> = selectors.iter().map(|(n, _)| *n).collect();
            return Err((
                key(names[1]),
                format!("exactly one selector per target, found {}", names.join(" and ")),
            ));
        }
    };
    if let Selector::Pid(p) = selector {
        if p <= 0 {
            return Err((key("pid"), format!("expected a pid above 0, got {p}")));
        }
    }
    let name = match t.name.clone() {
        Some(n) if n.is_empty() || !n.chars().all(valid_name_char) => {
            return Err((
                key("name"),
                format!("{n:?}: a name may use letters, digits, '_', '-' and '.' only"),
            ))
        }
        Some(n) => n,
        None => default_name(&selector),
    };
    let judge = overlay_judge(base.judge, &t.judge_keys());
    check_judge(&judge, base.interval).map_err(|(k, m)| (key(k), m))?;
    let rules = rules(&t.rules).map_err(|(k, m)| (key(&format!("rules.{k}")), m))?;
    let merged = t
        .actions
        .as_ref()
        .map_or_else(|| base.actions.clone(), |mine| mine.over(base.actions));
    let actions = actions::validate(&merged).map_err(|(k, m)| (key(&format!("actions.{k}")), m))?;
    Ok(TargetConfig {
        name,
        selector,
        judge,
        rules,
        actions,
        mode: t.mode.unwrap_or(base.mode),
    })
}

fn rules(raw: &RawRules) -> Result<Vec<(Series, Rule)>, (String, String)> {
    let all = [
        (Series::Fds, raw.fds),
        (Series::TcpEstablished, raw.tcp_established),
        (Series::TcpCloseWait, raw.tcp_close_wait),
        (Series::Rss, raw.rss),
        (Series::Anon, raw.anon),
        (Series::Heap, raw.heap),
        (Series::CgroupMemory, raw.cgroup_memory),
        (Series::Threads, raw.threads),
        (Series::StuckThreads, raw.stuck_threads),
        (Series::TcpStalled, raw.tcp_stalled),
        (Series::TcpCloseWaitAged, raw.tcp_close_wait_aged),
        (Series::CgroupSock, raw.cgroup_sock),
    ];
    let mut out = Vec::new();
    for (series, r) in all {
        let Some(r) = r else { continue };
        out.push((series, rule(series, &r)?));
    }
    Ok(out)
}

fn rule(series: Series, r: &RawRule) -> Result<Rule, (String, String)> {
    let at = |k: &str| format!("{series}.{k}");
    if r.max.is_none()
        && r.max_ratio.is_none()
        && r.exhaust_within.is_none()
        && r.max_growth.is_none()
    {
        return Err((
            series.to_string(),
            "a rule needs at least one of max, max_ratio, exhaust_within, max_growth".into(),
        ));
    }
    if r.limit.is_some() && series.natural_limit() {
        return Err((
            at("limit"),
            format!("{series} has a limit from the kernel; `limit` is for rss, anon, heap, cgroup_sock and tcp series"),
        ));
    }
    if (r.max_ratio.is_some() || r.exhaust_within.is_some())
        && !series.natural_limit()
        && !matches!(series, Series::Rss | Series::Anon | Series::Heap)
        && r.limit.is_none()
    {
        return Err((
            at(if r.max_ratio.is_some() {
                "max_ratio"
            } else {
                "exhaust_within"
            }),
            format!("{series} has no natural limit: set `limit`, or use max / max_growth"),
        ));
    }
    Ok(Rule {
        max: r.max.map(|q| q.0),
        max_ratio: r.max_ratio.map(|q| q.0),
        exhaust_within: r.exhaust_within.map(|d| d.0),
        max_growth_per_s: r.max_growth.map(|g| g.per_second),
        limit: r.limit.map(|q| q.0),
    })
}

#[cfg(test)]
mod tests;
