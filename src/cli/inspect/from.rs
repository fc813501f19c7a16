//! `leakwatch inspect --from URL`: what a running `leakwatch run` judged of the inspected
//! process. One or two looks have no window to judge a trend; the daemon has one. Its
//! `/status` (asked with the strict GET of `crate::client`) gives the verdict, the leak
//! warnings, and each judged series' slope and time to exhaustion.
//!
//! Whatever goes wrong (no answer, not 200, not leakwatch's JSON, no target with that
//! pid) is one line in the block: inspect still prints its own report and keeps its exit
//! code. The pure steps ([`parse_url`], [`match_status`], [`render`]) are apart from the
//! one that talks to the daemon ([`ask`]).

use std::fmt::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{self, HttpError};
use crate::judge::rules::{amount, approx_secs, rate_text};
use crate::judge::series::is_bytes;
use crate::judge::Series;
use crate::sample::TargetId;

/// How long connecting, and each read of the answer, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The report's label column (as in `report`).
const LABEL: usize = 10;

/// `--from`: where a `leakwatch run` answers HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonUrl {
    /// The URL as given, for messages.
    pub text: String,
    host: String,
    port: u16,
    /// The path of `/status`, after any prefix the URL has (a reverse proxy's).
    path: String,
}

impl DaemonUrl {
    /// `host:port`, an IPv6 address in brackets (the `Host` header).
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL of `/status` itself, for messages.
    fn status_url(&self) -> String {
        format!("http://{}{}", self.authority(), self.path)
    }
}

/// `http://HOST[:PORT][/PREFIX]` (the port defaults to 80; `/status` at the end is
/// allowed; the scheme may be left out). Anything else is refused with what was expected.
pub fn parse_url(s: &str) -> Result<DaemonUrl, String> {
    let expected = "expected http://HOST:PORT, e.g. http://127.0.0.1:9717";
    let rest = match s.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{scheme}:// is not supported: give leakwatch's own listener ({expected})"
            ))
        }
        None => s,
    };
    if rest.contains(['?', '#', '@', ' ']) {
        return Err(format!("{s:?}: {expected}"));
    }
    let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = split_host_port(authority).ok_or_else(|| format!("{s:?}: {expected}"))?;
    let prefix = prefix.trim_end_matches('/');
    let path = if prefix.ends_with("/status") {
        prefix.to_string()
    } else {
        format!("{prefix}/status")
    };
    Ok(DaemonUrl {
        text: s.to_string(),
        host,
        port,
        path,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; `None` when empty or the port is not one.
fn split_host_port(a: &str) -> Option<(String, u16)> {
    let (host, port) = match a.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None if a.matches(':').count() > 1 => return None,
        None => match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
        None => 80,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// What `/status` says of the inspected process (the fields of it inspect shows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FromDaemon {
    /// `--from` as given.
    pub url: String,
    /// Why nothing could be learned (no answer, not 200, not its JSON, no such pid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The daemon's snapshot is stale: its ticks have stopped.
    pub stale: bool,
    /// Milliseconds since the daemon published the snapshot.
    pub snapshot_age_ms: Option<u64>,
    /// The daemon's targets whose current process is the inspected one.
    pub targets: Vec<DaemonTarget>,
}

/// The part of `/status` read: its targets and how fresh it is.
#[derive(Debug, Deserialize)]
struct Status {
    targets: Vec<DaemonTarget>,
    #[serde(default)]
    stale: bool,
    snapshot_age_ms: Option<u64>,
}

/// One target of `/status`, with the keys it has there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonTarget {
    pub name: String,
    pub target: Option<TargetId>,
    pub judged: DaemonJudged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonJudged {
    pub verdict: DaemonVerdict,
    #[serde(default)]
    pub series: Vec<DaemonSeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonVerdict {
    pub healthy: bool,
    #[serde(default)]
    pub failing: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// Leak suspected lines (absent from `/status` when there are none).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One judged series; its name stays text, so a newer daemon's series still shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonSeries {
    pub series: String,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub trend: Option<DaemonTrend>,
    pub seconds_to_exhaustion: Option<f64>,
    #[serde(default)]
    pub leak_suspected: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonTrend {
    /// Units per second (bytes/s for memory series).
    pub slope_per_s: f64,
    pub trusted: bool,
    pub untrusted_because: Option<String>,
}

/// Ask the daemon at `url` (with the bearer token in `token_file`, if given) what it
/// judged of `me`. Never fails: what went wrong is the answer's `error`.
pub fn ask(url: &DaemonUrl, token_file: Option<&Path>, me: TargetId) -> FromDaemon {
    let body = token_file
        .map(crate::config::read_token)
        .transpose()
        .and_then(|token| get_status(url, token.as_deref()));
    match body {
        Ok(body) => match_status(&url.text, &body, me),
        Err(e) => failed(&url.text, e),
    }
}

fn failed(url: &str, error: String) -> FromDaemon {
    FromDaemon {
        url: url.to_string(),
        error: Some(error),
        stale: false,
        snapshot_age_ms: None,
        targets: Vec::new(),
    }
}

/// `GET /status`: the body of a 200, or why there is none.
fn get_status(url: &DaemonUrl, token: Option<&str>) -> Result<String, String> {
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .collect();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let raw = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
        url.path,
        url.authority()
    );
    let mut why = format!("{} resolves to no address", url.host);
    for addr in addrs {
        // Silence, or a read that failed or timed out, is no answer; a truncated or
        // malformed one is refused rather than read as JSON.
        let answer = match client::send(addr, raw.as_bytes(), TIMEOUT) {
            Ok(raw) if raw.is_empty() => (0, String::new()),
            Ok(raw) => match client::parse_response(&raw) {
                Ok(r) => (r.status, String::from_utf8_lossy(&r.body).into_owned()),
                Err(e) => {
                    return Err(format!(
                        "{} sent a malformed HTTP answer: {e}",
                        url.status_url()
                    ))
                }
            },
            Err(HttpError::Unreachable { source, .. }) => {
                why = format!("{addr}: {source}");
                continue;
            }
            Err(HttpError::Malformed { why, .. }) => {
                return Err(format!(
                    "{} sent a malformed HTTP answer: {why}",
                    url.status_url()
                ))
            }
            Err(_) => (0, String::new()),
        };
        return answered(url, token.is_some(), answer);
    }
    Err(format!("cannot reach leakwatch at {}: {why}", url.text))
}

/// The body of a 200; a clear message for anything else.
fn answered(
    url: &DaemonUrl,
    with_token: bool,
    (code, body): (u16, String),
) -> Result<String, String> {
    let first = body.lines().next().unwrap_or("").trim();
    match code {
        200 => Ok(body),
        0 => Err(format!(
            "no HTTP answer from {} within {}s",
            url.text,
            TIMEOUT.as_secs()
        )),
        401 if with_token => Err(format!("{} refused the token (401)", url.text)),
        401 => Err(format!(
            "{} needs leakwatch's bearer token (401): give --token-file",
            url.status_url()
        )),
        _ => Err(format!("{} answered {code}: {first}", url.status_url())),
    }
}

/// The targets of `/status` body `body` whose current process is `me`, or why none is.
pub fn match_status(url: &str, body: &str, me: TargetId) -> FromDaemon {
    let status: Status = match serde_json::from_str(body) {
        Ok(s) => s,
        Err(e) => {
            return failed(
                url,
                format!("{url} did not answer leakwatch's /status: {e}"),
            )
        }
    };
    let (mine, others): (Vec<_>, Vec<_>) = status
        .targets
        .into_iter()
        .partition(|t| t.target == Some(me));
    let error = mine.is_empty().then(|| no_match(url, &others, me));
    FromDaemon {
        url: url.to_string(),
        error,
        stale: status.stale,
        snapshot_age_ms: status.snapshot_age_ms,
        targets: mine,
    }
}

/// Why no target matched: the daemon's targets and the pids it watches.
fn no_match(url: &str, targets: &[DaemonTarget], me: TargetId) -> String {
    if let Some(t) = targets
        .iter()
        .find(|t| t.target.is_some_and(|id| id.pid == me.pid))
    {
        return format!(
            "target {:?} of leakwatch at {url} had pid {} for another process (started \
             at another time): its last tick predates a restart, or the pid was reused",
            t.name, me.pid
        );
    }
    let watched: Vec<String> = targets
        .iter()
        .map(|t| match t.target {
            Some(id) => format!("{} (pid {})", t.name, id.pid),
            None => format!("{} (no process)", t.name),
        })
        .collect();
    let watched = if watched.is_empty() {
        "none".to_string()
    } else {
        watched.join(", ")
    };
    format!(
        "no target of leakwatch at {url} is pid {} (its targets: {watched})",
        me.pid
    )
}

/// The block inspect prints after its report.
pub fn render(d: &FromDaemon) -> String {
    let mut lines = Vec::new();
    if let Some(e) = &d.error {
        lines.push(e.clone());
    }
    for t in &d.targets {
        target_lines(d, t, &mut lines);
    }
    let mut out = String::from("\n");
    for (i, line) in lines.iter().enumerate() {
        let label = if i == 0 { "DAEMON" } else { "" };
        let _ = writeln!(out, "{label:<LABEL$}{line}");
    }
    out
}

fn target_lines(d: &FromDaemon, t: &DaemonTarget, lines: &mut Vec<String>) {
    let mut head = format!("leakwatch at {}, target {:?}", d.url, t.name);
    if d.stale {
        let age = d.snapshot_age_ms.map_or(String::new(), |ms| {
            format!(" {} old", crate::units::duration_ms(ms))
        });
        let _ = write!(head, " (stale snapshot{age}: its ticks have stopped)");
    }
    lines.push(head);
    let v = &t.judged.verdict;
    if v.healthy {
        lines.push(format!("{:<LABEL$}healthy (/healthz 200)", "verdict"));
    } else {
        lines.push(format!("{:<LABEL$}unhealthy (/healthz 503)", "verdict"));
    }
    let kinds = [
        ("failing", &v.failing),
        ("warning", &v.warnings),
        ("note", &v.notes),
    ];
    for (kind, texts) in kinds {
        lines.extend(texts.iter().map(|l| format!("{kind:<LABEL$}{l}")));
    }
    lines.extend(t.judged.series.iter().map(series_line));
}

/// `series    fds: 1234 of 4096, +19.5/s, limit in ~3m, leak suspected`.
fn series_line(s: &DaemonSeries) -> String {
    let bytes = Series::named(&s.series).is_some_and(is_bytes);
    let value = s.value.map_or("unknown".to_string(), |v| amount(v, bytes));
    let mut line = match s.limit {
        Some(l) => format!(
            "{:<LABEL$}{}: {value} of {}",
            "series",
            s.series,
            amount(l, bytes)
        ),
        None => format!("{:<LABEL$}{}: {value} (no limit)", "series", s.series),
    };
    match &s.trend {
        None => line.push_str(", no trend yet"),
        Some(t) => {
            let _ = write!(line, ", {}", rate_text(t.slope_per_s, bytes));
            if !t.trusted {
                let why = t.untrusted_because.as_deref().unwrap_or("too noisy");
                let _ = write!(line, " (not trusted: {why})");
            }
        }
    }
    if let Some(secs) = s.seconds_to_exhaustion {
        let _ = write!(line, ", limit in ~{}", approx_secs(secs));
    }
    if s.leak_suspected {
        line.push_str(", leak suspected");
    }
    line
}

#[cfg(test)]
mod tests;
