//! `record`: every tick, one JSON line per target found ([`RecordLine`]) appended to a
//! file, so `leakwatch backtest --recording FILE` can replay the service with other rules.
//! Past `record_max_size` the file moves to `FILE.1` (replacing the one before) and a new
//! one starts. Recording is leakwatch's own business: a failure is logged once and never
//! touches a verdict.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::backtest::recording::RecordLine;
use crate::judge::series;
use crate::judge::{Rule, Series};
use crate::snapshot::TargetStatus;

#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    size: u64,
    /// The last error was logged; cleared by a write that works.
    failing: bool,
}

impl Recorder {
    pub fn new(path: &Path, max_bytes: u64) -> Recorder {
        Recorder {
            path: path.to_path_buf(),
            max_bytes,
            file: None,
            size: 0,
            failing: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append this tick's lines.
    pub fn record(&mut self, targets: &[TargetStatus]) {
        let mut text = String::new();
        for line in targets.iter().filter_map(line) {
            if let Ok(json) = serde_json::to_string(&line) {
                text.push_str(&json);
                text.push('\n');
            }
        }
        if text.is_empty() {
            return;
        }
        match self.append(text.as_bytes()) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                warn!(file = %self.path.display(), error = %e, "cannot write the recording");
                self.failing = true;
                self.file = None;
            }
            Err(_) => self.file = None,
        }
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.file = None;
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, &old)?;
            return self.append(bytes);
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(bytes)?;
            self.size += bytes.len() as u64;
        }
        Ok(())
    }
}

/// A target's line, when a process was sampled running this tick.
fn line(t: &TargetStatus) -> Option<RecordLine> {
    let sample = t.sample.as_ref().filter(|_| t.found)?;
    let mut line = RecordLine {
        t: sample.taken_at_unix_ms,
        target: t.name.clone(),
        pid: sample.target.pid,
        starttime: sample.target.starttime_ticks,
        started_ms: sample.process.as_ref().and_then(|p| p.started_unix_ms),
        ..RecordLine::default()
    };
    // Every series, not only those with rules now: the replay may judge others.
    for series in Series::ALL {
        let s = series::read(sample, series, &Rule::default());
        if let Some(v) = s.value {
            line.values.insert(series, v);
        }
        if let Some(l) = s.limit {
            line.limits.insert(series, l);
        }
    }
    Some(line)
}
