//! The replay: one virtual tick per timestamp of the history, each a [`Sample`] built from
//! the points at that time and judged by a [`TargetJudge`] as `run` judges a live one.
//! A restart (a new start time, or a rise of the restart count) is a new process:
//! `new_target` resets windows, rule states and warm-up there, exactly as in `run`.
//! Each flip notes when its run of 503 ended; each series' first suspicion of a leak in a
//! process is kept; [`lead`](super::lead) then meets each restart and exhaustion with them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    lead, Exhaustion, Flip, LeadTo, Points, Setup, Suspicion, TargetHistory, TargetReport, Tick,
    EXHAUSTED_RATIO,
};
use crate::judge::{
    effective_rules, leak_line, Answer, FlipDetector, Input, Judged, Series, TargetJudge,
};
use crate::sample::{ProcessInfo, Sample};

/// Reads a series forward in time: the point at a time, or the last one at or before it.
struct Cursor<'a> {
    points: &'a [(u64, f64)],
    next: usize,
}

impl<'a> Cursor<'a> {
    fn new(points: &'a Points) -> Cursor<'a> {
        Cursor { points, next: 0 }
    }

    /// The last finite value at or before `t`.
    fn as_of(&mut self, t: u64) -> Option<f64> {
        while self.points.get(self.next).is_some_and(|p| p.0 <= t) {
            self.next += 1;
        }
        self.points[..self.next]
            .iter()
            .rev()
            .map(|p| p.1)
            .find(|v| v.is_finite())
    }

    /// The finite value exactly at `t`.
    fn at(&mut self, t: u64) -> Option<f64> {
        while self.points.get(self.next).is_some_and(|p| p.0 < t) {
            self.next += 1;
        }
        match self.points.get(self.next) {
            Some(&(pt, v)) if pt == t && v.is_finite() => Some(v),
            _ => None,
        }
    }
}

/// Tells restarts from the start times and restart counts.
struct Restarts<'a> {
    starts: Cursor<'a>,
    counts: Cursor<'a>,
    last_start: Option<f64>,
    last_count: Option<f64>,
}

impl Restarts<'_> {
    /// The start time (unix ms) at `t`, and whether the process restarted since the last tick.
    fn at(&mut self, t: u64) -> (Option<u64>, bool) {
        let start = self.starts.as_of(t);
        let count = self.counts.as_of(t);
        let new_start =
            matches!((self.last_start, start), (Some(a), Some(b)) if (a - b).abs() > 1e-3);
        let counted = matches!((self.last_count, count), (Some(a), Some(b)) if b > a);
        self.last_start = start.or(self.last_start);
        self.last_count = count.or(self.last_count);
        let start_ms = start
            .filter(|s| *s > 0.0)
            .map(|s| (s * 1000.0).round() as u64);
        (start_ms, new_start || counted)
    }
}

/// The history read forward in time: one sample per tick.
struct Reader<'a> {
    values: BTreeMap<Series, Cursor<'a>>,
    limits: BTreeMap<Series, Cursor<'a>>,
    restarts: Restarts<'a>,
}

impl<'a> Reader<'a> {
    fn new(history: &'a TargetHistory) -> Reader<'a> {
        let cursors = |m: &'a BTreeMap<Series, Points>| {
            m.iter()
                .map(|(s, p)| (*s, Cursor::new(p)))
                .collect::<BTreeMap<_, _>>()
        };
        Reader {
            values: cursors(&history.values),
            limits: cursors(&history.limits),
            restarts: Restarts {
                starts: Cursor::new(&history.starts),
                counts: Cursor::new(&history.restart_counts),
                last_start: None,
                last_count: None,
            },
        }
    }

    /// The sample at `t`, and whether the process restarted since the last tick.
    fn sample(&mut self, t: u64) -> (Sample, bool) {
        let (started, restarted) = self.restarts.at(t);
        let mut sample = sample_at(t, started);
        for (series, cursor) in &mut self.values {
            let limit = self.limits.get_mut(series).and_then(|c| c.as_of(t));
            crate::judge::series::put(&mut sample, *series, cursor.at(t), limit);
        }
        (sample, restarted)
    }
}

/// One judged tick of a [`walk`].
pub(super) struct Walked<'a> {
    /// The tick's index.
    pub i: usize,
    pub t: u64,
    /// A new process starts at `t` (never on the first tick).
    pub restarted: bool,
    pub sample: &'a Sample,
    pub judged: &'a Judged,
}

/// Judge `history` tick by tick as `run` judges a live target, `each` tick in turn; the
/// ticks' times.
pub(super) fn walk(
    history: &TargetHistory,
    setup: &Setup,
    mut each: impl FnMut(Walked<'_>),
) -> Vec<u64> {
    let times = timeline(history);
    let rules = rules_for(history, setup);
    let mut reader = Reader::new(history);
    let mut judge = TargetJudge::new();
    for (i, &t) in times.iter().enumerate() {
        let (sample, restarted) = reader.sample(t);
        if i == 0 || restarted {
            judge.new_target(t);
        }
        let judged = judge.judge(Input::Sample(&sample), &setup.judge, &rules);
        each(Walked {
            i,
            t,
            restarted: i > 0 && restarted,
            sample: &sample,
            judged: &judged,
        });
    }
    times
}

/// Replay one target's history through the judge.
pub fn replay(history: &TargetHistory, setup: &Setup) -> TargetReport {
    let mut flips = FlipDetector::new();
    let mut report = TargetReport {
        labels: history.labels.clone(),
        samples: 0,
        flips: Vec::new(),
        restarts: Vec::new(),
        exhaustions: Vec::new(),
        events: Vec::new(),
        suspicions: Vec::new(),
        ticks: Vec::new(),
    };
    // The series exhausted and suspected in this process.
    let (mut exhausted, mut suspected): (Vec<Series>, Vec<Series>) = (Vec::new(), Vec::new());
    let times = walk(history, setup, |w| {
        let (t, judged) = (w.t, w.judged);
        if w.i == 0 || w.restarted {
            exhausted.clear();
            suspected.clear();
            if w.restarted {
                report.restarts.push(t);
            }
        }
        note_exhaustions(t, judged, &mut exhausted, &mut report.exhaustions);
        note_suspicions(t, judged, &mut suspected, &mut report.suspicions);
        match flips.answered(&judged.verdict) {
            Some(Answer::NowFailing) => report.flips.push(flip(t, judged)),
            Some(Answer::HealthyAgain) => {
                if let Some(f) = report.flips.last_mut() {
                    f.until_ms = f.until_ms.or(Some(t));
                }
            }
            None => {}
        }
        report.ticks.push(tick(t, judged));
    });
    report.samples = times.len();
    conclude(&mut report, setup, times.last().copied().unwrap_or(0));
    report
}

/// What followed each flip and suspicion, and each restart's and exhaustion's leads.
fn conclude(report: &mut TargetReport, setup: &Setup, end: u64) {
    for f in &mut report.flips {
        let within = exhaust_within(setup, &f.rules);
        outcome(f, &report.restarts, &report.exhaustions, within, end);
    }
    for s in &mut report.suspicions {
        s.next = lead::follow(s, &report.restarts, &report.exhaustions);
    }
    report.events = lead::events(&report.flips, &report.restarts, &report.exhaustions);
}

/// Every time any judged series has a point, in order.
fn timeline(history: &TargetHistory) -> Vec<u64> {
    let mut times: Vec<u64> = history
        .values
        .values()
        .flat_map(|p| p.iter().map(|(t, _)| *t))
        .collect();
    times.sort_unstable();
    times.dedup();
    times
}

/// The configured rules, less those on TCP states the history does not have: both states
/// live in one section of the sample, and an absent one would read as 0.
fn rules_for(history: &TargetHistory, setup: &Setup) -> Vec<(Series, crate::judge::Rule)> {
    setup
        .rules
        .iter()
        .filter(|(s, _)| {
            !matches!(s, Series::TcpEstablished | Series::TcpCloseWait)
                || history.values.contains_key(s)
        })
        .cloned()
        .collect()
}

fn sample_at(t: u64, started_unix_ms: Option<u64>) -> Sample {
    Sample {
        taken_at_unix_ms: t,
        taken_at_mono_ms: t,
        process: Some(ProcessInfo {
            started_unix_ms,
            ..ProcessInfo::default()
        }),
        ..Sample::default()
    }
}

/// A series newly at its limit (once per process).
pub(super) fn note_exhaustions(
    t: u64,
    j: &Judged,
    seen: &mut Vec<Series>,
    out: &mut Vec<Exhaustion>,
) {
    for s in &j.series {
        let (Some(value), Some(limit)) = (s.value, s.limit) else {
            continue;
        };
        if limit > 0.0 && value >= limit * EXHAUSTED_RATIO && !seen.contains(&s.series) {
            seen.push(s.series);
            out.push(Exhaustion {
                at_ms: t,
                series: s.series,
                value,
                limit,
            });
        }
    }
}

/// A series newly suspected of leaking (once per process), as the judge said it then.
fn note_suspicions(t: u64, j: &Judged, seen: &mut Vec<Series>, out: &mut Vec<Suspicion>) {
    for s in j.series.iter().filter(|s| s.leak_suspected) {
        let (Some(trend), Some(line)) = (s.trend.as_ref(), leak_line(s)) else {
            continue;
        };
        if seen.contains(&s.series) {
            continue;
        }
        seen.push(s.series);
        out.push(Suspicion {
            at_ms: t,
            series: s.series,
            slope_per_s: trend.slope_per_s,
            seconds_to_exhaustion: s.seconds_to_exhaustion,
            value: s.value,
            limit: s.limit,
            line,
            next: None,
        });
    }
}

fn flip(t: u64, j: &Judged) -> Flip {
    Flip {
        at_ms: t,
        rules: j
            .rules
            .iter()
            .filter(|r| r.failing)
            .map(|r| r.series)
            .collect(),
        lines: j.verdict.failing.clone(),
        next: None,
        false_alarm: None,
        until_ms: None,
    }
}

fn tick(t: u64, j: &Judged) -> Tick {
    Tick {
        at_ms: t,
        healthy: j.verdict.healthy,
        series: j
            .series
            .iter()
            .filter(|s| s.value.is_some())
            .map(|s| (s.series, (s.value, s.limit)))
            .collect(),
    }
}

/// How long after a flip a restart or exhaustion confirms it: the longest `exhaust_within`
/// of the failing rules, else of any rule (30 min by default).
fn exhaust_within(setup: &Setup, failing: &[Series]) -> Duration {
    let rules = effective_rules(&setup.rules);
    let of = |pick: &dyn Fn(&Series) -> bool| {
        rules
            .iter()
            .filter(|(s, _)| pick(s))
            .filter_map(|(_, r)| r.exhaust_within)
            .max()
    };
    of(&|s| failing.contains(s))
        .or_else(|| of(&|_| true))
        .unwrap_or(Duration::from_secs(30 * 60))
}

/// The flip's next restart or exhaustion, and whether it was a likely false alarm.
fn outcome(f: &mut Flip, restarts: &[u64], exhaustions: &[Exhaustion], within: Duration, end: u64) {
    let restart = restarts
        .iter()
        .find(|&&r| r > f.at_ms)
        .map(|&r| (r, LeadTo::Restart));
    let exhaustion = exhaustions
        .iter()
        .find(|e| e.at_ms >= f.at_ms)
        .map(|e| (e.at_ms, LeadTo::Exhaustion(e.series)));
    f.next = match (restart, exhaustion) {
        (Some(r), Some(e)) => Some(if e.0 <= r.0 { e } else { r }),
        (r, e) => r.or(e),
    };
    let deadline = f.at_ms + within.as_millis() as u64;
    f.false_alarm = match f.next {
        Some((at, _)) if at <= deadline => Some(false),
        _ if end < deadline => None,
        _ => Some(true),
    };
}
