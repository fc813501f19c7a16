//! Recordings: what `leakwatch run --record FILE` appends every tick, one JSON line per
//! target ([`RecordLine`]: the judged series' values and limits, the process identity and
//! start time), and how `backtest --recording FILE` reads them back into
//! [`TargetHistory`]s. A change of process (pid, starttime) is a restart.
//!
//! A last line cut short (leakwatch stopped mid-write, or the file is being written) is
//! skipped with a warning, as `tail` would; any other line that does not parse is an error
//! naming the file and line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::TargetHistory;
use crate::judge::Series;

/// One target's tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordLine {
    /// When the sample was taken, unix milliseconds.
    pub t: u64,
    pub target: String,
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`: with the pid, the process' identity.
    pub starttime: u64,
    /// The process start time, unix milliseconds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Each series' value (counts or bytes); unknown ones are left out.
    pub values: BTreeMap<Series, f64>,
    /// Each series' limit as the judge saw it.
    #[serde(default)]
    pub limits: BTreeMap<Series, f64>,
}

/// Why a recording cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: not a recording line: {why}")]
    Line {
        file: String,
        line: usize,
        why: String,
    },
    #[error("{0}: no complete recording line")]
    Empty(String),
}

/// Parse a recording's text; the warnings say what was skipped.
pub fn parse(text: &str, file: &str) -> Result<(Vec<RecordLine>, Vec<String>), RecordingError> {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let complete = text.ends_with('\n');
    let all: Vec<&str> = text.lines().collect();
    for (i, line) in all.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<RecordLine>(line) {
            Ok(l) => lines.push(l),
            Err(_) if i + 1 == all.len() && !complete => warnings.push(format!(
                "{file}:{}: the last line is cut short ({} bytes, no newline): skipped",
                i + 1,
                line.len()
            )),
            Err(e) => {
                return Err(RecordingError::Line {
                    file: file.to_string(),
                    line: i + 1,
                    why: e.to_string(),
                })
            }
        }
    }
    if lines.is_empty() {
        return Err(RecordingError::Empty(file.to_string()));
    }
    Ok((lines, warnings))
}

/// Read recordings (e.g. the rotated `FILE.1`, then `FILE`) in order.
pub fn read(files: &[&Path]) -> Result<(Vec<RecordLine>, Vec<String>), RecordingError> {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(|source| RecordingError::Read {
            file: name.clone(),
            source,
        })?;
        let (l, w) = parse(&text, &name)?;
        lines.extend(l);
        warnings.extend(w);
    }
    Ok((lines, warnings))
}

/// The recordings of one fleet, one list per replica: `FILE.1` given with `FILE` is its
/// older part (rotated), the same replica; every other file is a replica of its own. In
/// the order given.
pub fn replicas<'a>(files: &[&'a Path]) -> Vec<Vec<&'a Path>> {
    let mut out: Vec<Vec<&'a Path>> = Vec::new();
    for &f in files {
        if let Some(group) = out
            .iter_mut()
            .find(|g| g.iter().any(|&o| same_recording(o, f)))
        {
            group.push(f);
        } else {
            out.push(vec![f]);
        }
    }
    out
}

/// `a` and `b` are `FILE.1` and `FILE` (either way round).
fn same_recording(a: &Path, b: &Path) -> bool {
    let rotated =
        |x: &Path, y: &Path| x.as_os_str().to_string_lossy() == format!("{}.1", y.display());
    rotated(a, b) || rotated(b, a)
}

/// A target's history being built: the last process identity and the restarts so far.
type Building = (TargetHistory, Option<(i32, u64)>, f64);

/// One history per target name; each new (pid, starttime) counts a restart.
pub fn histories(lines: &[RecordLine]) -> Vec<TargetHistory> {
    let mut by_name: BTreeMap<&str, Building> = BTreeMap::new();
    let mut sorted: Vec<&RecordLine> = lines.iter().collect();
    sorted.sort_by_key(|l| l.t);
    for l in sorted {
        let (h, last, count) = by_name.entry(&l.target).or_default();
        h.labels.insert("target".into(), l.target.clone());
        let id = (l.pid, l.starttime);
        if last.is_some_and(|old| old != id) {
            *count += 1.0;
        }
        *last = Some(id);
        h.restart_counts.push((l.t, *count));
        if let Some(s) = l.started_ms {
            h.starts.push((l.t, s as f64 / 1000.0));
        }
        for (series, v) in &l.values {
            h.values.entry(*series).or_default().push((l.t, *v));
        }
        for (series, v) in &l.limits {
            h.limits.entry(*series).or_default().push((l.t, *v));
        }
    }
    by_name.into_values().map(|(h, _, _)| h).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: u64, pid: i32, fds: f64) -> String {
        let l = RecordLine {
            t,
            target: "api".into(),
            pid,
            starttime: 7,
            started_ms: None,
            values: [(Series::Fds, fds)].into(),
            limits: [(Series::Fds, 1024.0)].into(),
        };
        serde_json::to_string(&l).unwrap() + "\n"
    }

    #[test]
    fn lines_read_back_and_a_new_process_is_a_restart() {
        let text = line(1000, 5, 10.0) + &line(2000, 5, 11.0) + &line(3000, 6, 3.0);
        let (lines, warnings) = parse(&text, "rec").unwrap();
        assert!(warnings.is_empty());
        let h = histories(&lines);
        assert_eq!(h.len(), 1);
        assert_eq!(
            h[0].values[&Series::Fds],
            vec![(1000, 10.0), (2000, 11.0), (3000, 3.0)]
        );
        assert_eq!(
            h[0].restart_counts,
            vec![(1000, 0.0), (2000, 0.0), (3000, 1.0)]
        );
        let r = crate::backtest::replay(&h[0], &crate::backtest::Setup::default());
        assert_eq!(r.restarts, vec![3000]);
    }

    #[test]
    fn each_recording_of_a_fleet_is_a_replica_with_its_rotated_part() {
        let p = |s: &'static str| Path::new(s);
        let files = [p("a.jsonl.1"), p("b.jsonl"), p("a.jsonl"), p("c.jsonl.1")];
        assert_eq!(
            replicas(&files),
            vec![
                vec![p("a.jsonl.1"), p("a.jsonl")],
                vec![p("b.jsonl")],
                vec![p("c.jsonl.1")]
            ]
        );
    }

    #[test]
    fn a_cut_last_line_is_skipped_and_a_bad_one_is_an_error() {
        let whole = line(1000, 5, 10.0) + &line(2000, 5, 11.0);
        let cut = &whole[..whole.len() - 9];
        let (lines, warnings) = parse(cut, "rec").unwrap();
        assert_eq!(lines.len(), 1);
        assert!(
            warnings[0].contains("rec:2: the last line is cut short"),
            "{warnings:?}"
        );
        let bad = format!("{}{{\"t\":\n{}", line(1, 5, 1.0), line(2, 5, 1.0));
        let e = parse(&bad, "rec").unwrap_err().to_string();
        assert!(e.starts_with("rec:2: not a recording line"), "{e}");
        // Nothing usable at all.
        let e = parse(&whole[..20], "rec").unwrap_err().to_string();
        assert_eq!(e, "rec: no complete recording line");
    }
}
