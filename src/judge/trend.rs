//! The robust slope of a series: Theil–Sen (the median of all pairwise slopes) over the
//! trend window, trusted as a leak only with enough samples over a long enough span, a
//! positive slope and a significant Mann–Kendall test ([`mann_kendall`]: ties and
//! autocorrelation accounted for). A leak riding on a GC sawtooth several times its
//! window's growth is trusted; a sawtooth without a trend, a slow ramp-and-drop, a single
//! spike, a step up then flat and a counter reset are not.

mod mann_kendall;
#[cfg(test)]
mod shape_tests;

use std::time::Duration;

use serde::Serialize;

use super::spec::JudgeConfig;
use mann_kendall::mann_kendall;

/// The Mann–Kendall z a rising trend needs to be trusted: one-sided p < 0.005. Measured on
/// generated windows (docs/judging.md, "How it judges"): 2.33 (p < 0.01) still trusts a flat 150 s
/// sawtooth and a step sampled every 5 s on some ticks; 3.0 loses a 19 MiB/min leak under a
/// 300 MiB two-minute sawtooth sampled every 15 s in a third of its windows.
pub const Z_TRUST: f64 = 2.58;

/// Above this many points the window is thinned evenly for the pairwise slopes: the cost is
/// quadratic, and 256 points (32,640 pairs) estimate the median as well as 600.
const MAX_POINTS: usize = 256;

/// One observation: monotonic milliseconds and the value (count or bytes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub t_ms: u64,
    pub value: f64,
}

/// The points of one series within the trend window, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    points: Vec<Point>,
    /// When the newest point [`Window::trim`] dropped was taken: the series was watched
    /// from then, though the window now starts later.
    dropped_t_ms: Option<u64>,
}

impl Window {
    /// Append a point; one older than the newest (a clock that went back) replaces history.
    pub fn push(&mut self, p: Point) {
        if self.points.last().is_some_and(|l| p.t_ms < l.t_ms) {
            self.points.clear();
            self.dropped_t_ms = None;
        }
        self.points.push(p);
    }

    /// Drop points older than `window` before `now_ms`.
    pub fn trim(&mut self, now_ms: u64, window: Duration) {
        let horizon = now_ms.saturating_sub(window.as_millis() as u64);
        let keep_from = self.points.partition_point(|p| p.t_ms < horizon);
        if keep_from > 0 {
            self.dropped_t_ms = Some(self.points[keep_from - 1].t_ms);
            self.points.drain(..keep_from);
        }
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// The trend of the points kept, the series watched since the newest point dropped
    /// (see [`trend_watched_since`]).
    pub fn trend(&self, judge: &JudgeConfig) -> Option<Trend> {
        trend_watched_since(&self.points, self.dropped_t_ms, judge)
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// The slope of a window and whether it is trusted as sustained growth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    /// Median pairwise slope, units per second (negative when falling).
    pub slope_per_s: f64,
    /// Points in the window.
    pub samples: usize,
    /// Time from the oldest to the newest point, seconds.
    pub span_s: f64,
    /// Share of pairwise slopes that are positive (0..=1); shown, not judged.
    pub rising_share: f64,
    /// The Mann–Kendall z of the window (positive when rising), ties and autocorrelation
    /// accounted for; trusted from [`Z_TRUST`].
    pub mann_kendall_z: f64,
    /// Growth is established: enough samples over enough time, a positive slope, a
    /// significant Mann–Kendall z.
    pub trusted: bool,
    /// Why it is not trusted, for `/status` (`12/30 samples`, `span 1m < 5m`,
    /// `Mann-Kendall z 1.84 < 2.58`, ...).
    pub untrusted_because: Option<String>,
}

/// The Theil–Sen trend of `points` (oldest first); `None` with fewer than 3 points.
pub fn trend(points: &[Point], judge: &JudgeConfig) -> Option<Trend> {
    trend_watched_since(points, None, judge)
}

/// [`trend`], with the series watched since `dropped_t_ms` (a point older than the window,
/// dropped from it) when it came at the points' cadence: a window that has dropped points
/// is full whatever the jitter of its ticks. Without it, a tick a little late leaves the
/// points a little short of the window, and the trust of a steady leak comes and goes.
pub fn trend_watched_since(
    points: &[Point],
    dropped_t_ms: Option<u64>,
    judge: &JudgeConfig,
) -> Option<Trend> {
    if points.len() < 3 {
        return None;
    }
    let thin = thinned(points);
    let mut slopes = Vec::with_capacity(thin.len() * (thin.len() - 1) / 2);
    for (i, a) in thin.iter().enumerate() {
        for b in &thin[i + 1..] {
            if b.t_ms > a.t_ms {
                slopes.push((b.value - a.value) * 1000.0 / (b.t_ms - a.t_ms) as f64);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    let rising = slopes.iter().filter(|s| **s > 0.0).count();
    let rising_share = rising as f64 / slopes.len() as f64;
    let slope = median(&mut slopes);
    let z = mann_kendall(&thin, slope).z;
    let span_ms = points[points.len() - 1].t_ms - points[0].t_ms;
    let min_span_ms = judge.min_span.as_millis() as u64;
    let needed = samples_needed(points.len(), span_ms, judge);
    // A full window spans up to one cadence less than `window` (ticks are not exact): a
    // `min_span` as long as the window (the default) asks for a full window.
    let cadence_ms = span_ms / (points.len().max(2) as u64 - 1);
    let window_ms = judge.window.as_millis() as u64;
    let full_ms = min_span_ms.min(window_ms.saturating_sub(cadence_ms));
    // A dropped point counts when no more than two cadences before the oldest kept: after a
    // gap in the watch (a target unreadable for a while) the window must fill again.
    let watched_ms = match dropped_t_ms {
        Some(t) if points[0].t_ms.saturating_sub(t) <= 2 * cadence_ms.max(1) => {
            points[points.len() - 1].t_ms.saturating_sub(t)
        }
        _ => span_ms,
    };
    let untrusted_because = if points.len() < needed {
        Some(format!("{}/{needed} samples", points.len()))
    } else if watched_ms < full_ms {
        Some(format!(
            "span {} < {}",
            crate::units::duration_ms(span_ms),
            super::rules::exact_secs(judge.min_span.as_secs_f64())
        ))
    } else if slope <= 0.0 {
        Some("not rising".to_string())
    } else if fell_below_trend(&thin, slope) {
        Some("a fall below the trend in the window (a reset)".to_string())
    } else if z < Z_TRUST {
        Some(format!("Mann-Kendall z {} < {Z_TRUST}", floor2(z)))
    } else {
        None
    };
    Some(Trend {
        slope_per_s: slope,
        samples: points.len(),
        span_s: span_ms as f64 / 1000.0,
        rising_share,
        mann_kendall_z: z,
        trusted: untrusted_because.is_none(),
        untrusted_because,
    })
}

/// Whether a value fell below the trend line by more than the values before it ever strayed
/// around it: a counter reset, a pool closed at once. The points before such a fall say
/// nothing about the process after it, so the window is not trusted until the fall is in
/// its oldest quarter (there the falling pairs across it weigh against the trend by
/// themselves). A GC drop returns to the line's floor, which the earlier troughs set.
fn fell_below_trend(points: &[Point], slope_per_s: f64) -> bool {
    let t0 = points[0].t_ms;
    let residual = |p: &Point| p.value - slope_per_s * (p.t_ms - t0) as f64 / 1000.0;
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut peak = f64::NEG_INFINITY;
    for (i, p) in points.iter().enumerate() {
        let r = residual(p);
        // Rounding of an exact line is no fall.
        let noise = 1e-9 * low.abs().max(1.0);
        // Only a value that went down is a fall: a leak that pauses (no traffic for a few
        // ticks, a child the scheduler did not run) drops below its line without falling.
        if i >= points.len() / 4 && p.value < peak && r < low - (high - low) - noise {
            return true;
        }
        low = low.min(r);
        high = high.max(r);
        peak = peak.max(p.value);
    }
    false
}

/// `z` to two decimals, rounded down, so a z just under the threshold never reads as it.
fn floor2(z: f64) -> String {
    format!("{:.2}", (z * 100.0).floor() / 100.0)
}

/// `min_samples`, or fewer for a series read at a slower cadence than the tick (the heap,
/// from smaps every minute): at most half of what the window can hold at the cadence seen,
/// and never fewer than 3. Without this a 10-minute window of minutely reads could never
/// hold 30 samples, and heap trends would never be trusted.
fn samples_needed(n: usize, span_ms: u64, judge: &JudgeConfig) -> usize {
    let cadence_ms = (span_ms / (n.max(2) as u64 - 1)).max(1);
    let capacity = judge.window.as_millis() as u64 / cadence_ms;
    (judge.min_samples as usize).min((capacity / 2).max(3) as usize)
}

/// `(limit - value) / slope` for a trusted rising trend with a limit; 0 when already there.
pub fn seconds_to_exhaustion(
    value: Option<f64>,
    limit: Option<f64>,
    trend: Option<&Trend>,
) -> Option<f64> {
    let t = trend.filter(|t| t.trusted && t.slope_per_s > 0.0)?;
    let (value, limit) = (value?, limit?);
    Some(((limit - value) / t.slope_per_s).max(0.0))
}

/// At most [`MAX_POINTS`], evenly spread, always keeping the first and the last.
fn thinned(points: &[Point]) -> Vec<Point> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let last = points.len() - 1;
    (0..MAX_POINTS)
        .map(|k| points[k * last / (MAX_POINTS - 1)])
        .collect()
}

/// The median (the mean of the middle two for an even count); `xs` is reordered.
fn median(xs: &mut [f64]) -> f64 {
    let n = xs.len();
    let mid = n / 2;
    let (_, m, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    if n % 2 == 1 {
        return upper;
    }
    let lower = xs[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lower + upper) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [5.0]), 5.0);
        assert_eq!(median(&mut [-1.0, 7.0]), 3.0);
        // Ties and a wild value: the middle stays the middle.
        assert_eq!(median(&mut [0.0, 0.0, 1e300, 0.0]), 0.0);
    }

    fn line(n: u64, step_ms: u64, per_s: f64) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                t_ms: i * step_ms,
                value: 1000.0 + per_s * (i * step_ms) as f64 / 1000.0,
            })
            .collect()
    }

    #[test]
    fn thinned_keeps_the_ends_and_spreads_evenly() {
        let short = line(256, 1000, 1.0);
        assert_eq!(thinned(&short), short);
        let long = line(1801, 1000, 1.0);
        let thin = thinned(&long);
        assert_eq!(thin.len(), MAX_POINTS);
        assert_eq!(thin.first(), long.first());
        assert_eq!(thin.last(), long.last());
        let gaps: Vec<u64> = thin.windows(2).map(|w| w[1].t_ms - w[0].t_ms).collect();
        assert!(gaps.iter().all(|g| (7000..=8000).contains(g)), "{gaps:?}");
    }

    #[test]
    fn a_thinned_window_keeps_the_slope() {
        // 30 min at 1 s, 119 KiB/s with a few MiB of jitter.
        let mut points = line(1801, 1000, 119.0 * 1024.0);
        for (i, p) in points.iter_mut().enumerate() {
            p.value += [0.0, 3.0, 1.0, 4.0, 1.0][i % 5] * 1_048_576.0;
        }
        let t = trend(&points, &JudgeConfig::default()).unwrap();
        assert_eq!(t.samples, 1801);
        assert_eq!(t.span_s, 1800.0);
        assert!(t.trusted, "{t:?}");
        assert!((t.slope_per_s / 1024.0 - 119.0).abs() < 0.5, "{t:?}");
    }

    #[test]
    fn untrusted_reasons() {
        let judge = JudgeConfig::default();
        assert_eq!(trend(&line(2, 5000, 1.0), &judge), None);
        let why = |p: &[Point]| trend(p, &judge).unwrap().untrusted_because;
        assert_eq!(why(&line(29, 5000, 1.0)).as_deref(), Some("29/30 samples"));
        assert_eq!(
            why(&line(40, 5000, 1.0)).as_deref(),
            Some("span 3m15s < 10m")
        );
        // min_span is the whole window: a window one tick short of it is full (ticks drift),
        // two ticks short is not.
        assert_eq!(
            why(&line(119, 5000, 1.0)).as_deref(),
            Some("span 9m50s < 10m")
        );
        assert_eq!(why(&line(120, 5000, 1.0)), None);
        assert_eq!(why(&line(121, 5000, 0.0)).as_deref(), Some("not rising"));
        assert_eq!(why(&line(121, 5000, -1.0)).as_deref(), Some("not rising"));
        assert_eq!(why(&line(121, 5000, 1.0)), None);
    }

    #[test]
    fn a_clock_going_back_restarts_the_window() {
        let mut w = Window::default();
        for t_ms in [1000, 2000, 3000] {
            w.push(Point { t_ms, value: 1.0 });
        }
        w.push(Point {
            t_ms: 500,
            value: 2.0,
        });
        assert_eq!(
            w.points(),
            &[Point {
                t_ms: 500,
                value: 2.0
            }]
        );
        w.push(Point {
            t_ms: 700_000,
            value: 3.0,
        });
        w.trim(700_000, Duration::from_secs(600));
        assert_eq!(w.len(), 1);
    }

    /// A 6 s window asking for a full window, as live tests judge.
    fn six_seconds() -> JudgeConfig {
        JudgeConfig {
            window: Duration::from_secs(6),
            min_span: Duration::from_secs(6),
            min_samples: 10,
            ..JudgeConfig::default()
        }
    }

    /// 300 ticks every 200 ms, each late by 0–190 ms (a loaded machine), the same each run.
    fn jittered_ticks() -> impl Iterator<Item = u64> {
        let mut seed = 0x2545_f491_u64;
        (0..300u64).map(move |tick| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            tick * 200 + seed % 190
        })
    }

    /// A steady leak on [`jittered_ticks`] (none in `gap`) through [`six_seconds`]: `each`
    /// sees the window at every tick from the first one that dropped a point.
    fn jittered_window(gap: Option<(u64, u64)>, mut each: impl FnMut(u64, &Window)) {
        let judge = six_seconds();
        let mut w = Window::default();
        for t_ms in jittered_ticks() {
            if gap.is_some_and(|(from, to)| (from..to).contains(&t_ms)) {
                continue;
            }
            w.push(Point {
                t_ms,
                value: t_ms as f64 / 50.0,
            });
            w.trim(t_ms, judge.window);
            if w.dropped_t_ms.is_some() {
                each(t_ms, &w);
            }
        }
    }

    /// Each tick's time and trust reason in [`jittered_window`].
    fn jittered_reasons(gap: Option<(u64, u64)>) -> Vec<(u64, Option<String>)> {
        let judge = six_seconds();
        let mut out = Vec::new();
        jittered_window(gap, |t_ms, w| {
            out.push((t_ms, w.trend(&judge).unwrap().untrusted_because));
        });
        out
    }

    #[test]
    fn a_full_window_stays_trusted_whatever_its_ticks_jitter() {
        let reasons = jittered_reasons(None);
        assert!(reasons.len() > 200);
        let lost: Vec<_> = reasons.iter().filter(|(_, why)| why.is_some()).collect();
        assert!(lost.is_empty(), "{lost:?}");
        // The points alone are short of the window on some ticks: without the dropped
        // point the trust would come and go.
        let judge = six_seconds();
        let mut short = 0;
        jittered_window(None, |_, w| {
            if trend(w.points(), &judge).is_some_and(|t| !t.trusted) {
                short += 1;
            }
        });
        assert!(short > 10, "{short}");
    }

    #[test]
    fn after_a_gap_in_the_watch_the_window_fills_again() {
        // No ticks from 30 s to 33 s: the points after the gap do not follow the point
        // dropped before it, so the window is not full again until 6 s of ticks after it.
        let reasons = jittered_reasons(Some((30_000, 33_000)));
        let short: Vec<u64> = reasons
            .iter()
            .filter(|(_, why)| why.as_deref().is_some_and(|w| w.starts_with("span ")))
            .map(|(t, _)| *t)
            .collect();
        assert!(!short.is_empty(), "{reasons:?}");
        assert!(
            short.iter().all(|t| (33_000..39_400).contains(t)),
            "{short:?}"
        );
        let trusted_after = reasons
            .iter()
            .filter(|(t, why)| *t >= 39_400 && why.is_none())
            .count();
        assert!(trusted_after > 100, "{reasons:?}");
    }
}

#[cfg(test)]
mod cadence_tests {
    use std::time::Duration;

    use super::*;

    fn rising(n: u64, every_ms: u64) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                t_ms: i * every_ms,
                value: (i * 1000) as f64,
            })
            .collect()
    }

    #[test]
    fn minutely_reads_are_trusted_in_a_ten_minute_window() {
        let judge = JudgeConfig::default();
        // smaps every 60 s: 11 reads over the 10-min window are enough.
        let t = trend(&rising(11, 60_000), &judge).unwrap();
        assert!(t.trusted, "{t:?}");
        // Reads every tick still need min_samples.
        let t = trend(&rising(20, 5_000), &judge).unwrap();
        assert_eq!(t.untrusted_because.as_deref(), Some("20/30 samples"));
        let judge = JudgeConfig {
            window: Duration::from_secs(600),
            ..JudgeConfig::default()
        };
        let t = trend(&rising(4, 60_000), &judge).unwrap();
        assert_eq!(t.untrusted_because.as_deref(), Some("4/5 samples"));
    }
}
