//! Helpers for tests of `/metrics` (its unit tests, `tests/metrics_promtool.rs`, tests
//! against a live daemon): a fixed [`example_snapshot`], [`sample_value`] to read one sample
//! back from the text format, and [`promtool_check`] to run `promtool check metrics`.

mod example;

use std::io::{self, Write};
use std::process::{Command, Stdio};

pub use example::{app_sample, example_snapshot, missing_target};

/// The value of the first sample named `name` whose labels include every pair of `labels`
/// (others may be present), in Prometheus text `text`. `None` when there is none.
///
/// `sample_value(&body, "leakwatch_open_fds", &[("target", "app")])`
pub fn sample_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter_map(parse_sample)
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}

/// One sample line of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A sample line (`name{k="v",...} value [timestamp]`); `None` for comments, blank lines
/// and lines that do not parse.
pub fn parse_sample(line: &str) -> Option<ParsedSample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let (name, rest) = line.split_at(name_end);
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => parse_labels(inner)?,
        None => (Vec::new(), rest),
    };
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(ParsedSample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"}` → the pairs and what follows the `}`.
fn parse_labels(mut rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once('=')?;
        let (value, after) = parse_quoted(after.trim_start().strip_prefix('"')?)?;
        labels.push((key.trim().to_string(), value));
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The rest of a quoted label value (after its opening `"`), unescaped, and what follows it.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// What `promtool check metrics` said.
#[derive(Debug, Clone)]
pub struct PromtoolReport {
    /// promtool exited 0: the text parsed and the linter found no problem (it exits 1 on a
    /// parse error, 3 on lint problems).
    pub success: bool,
    pub exit_code: Option<i32>,
    /// Its stdout and stderr (one line per problem).
    pub output: String,
}

/// Run `promtool check metrics` with `text` on stdin. `Ok(None)` when promtool is not
/// installed (Debian: the `prometheus` package).
pub fn promtool_check(text: &str) -> io::Result<Option<PromtoolReport>> {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    let stdin = child.stdin.take();
    // Feed stdin from another thread, so a promtool that answers early cannot block us.
    let output = std::thread::scope(|scope| {
        let writer =
            scope.spawn(move || stdin.map_or(Ok(()), |mut s| s.write_all(text.as_bytes())));
        let output = child.wait_with_output();
        // A promtool that exits before reading everything says why in its output.
        let written = writer.join().unwrap_or(Ok(()));
        let written = written.or_else(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => Ok(()),
            _ => Err(e),
        });
        output.and_then(|o| written.map(|()| o))
    })?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(Some(PromtoolReport {
        success: output.status.success(),
        exit_code: output.status.code(),
        output: text,
    }))
}
